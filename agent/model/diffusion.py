"""Diffusion schedulers (diffusers) and the sampling loop, apart from the IK net.

Training uses ``DDPMScheduler.add_noise``; inference uses ``DDIMScheduler`` (eta = 0, deterministic
given the initial noise) with "trailing" timestep spacing, so even one step starts from pure noise
at t = T_train - 1 (e.g. 3 steps: t = 999, 666, 332). The network is weightless to the scheduler
and the loop below is owned by the pipeline.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .configuration import IKNetConfig


def build_train_scheduler(config: IKNetConfig):
    """The DDPM scheduler used to noise trajectories in training."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=False,
    )


def build_inference_scheduler(config: IKNetConfig):
    """The DDIM scheduler used by the pipeline (same betas as training)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


def random_normal(
    shape: tuple[int, ...],
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to ``device``.

    ``generator`` may be a sequence of G generators: then ``shape[0]`` must be a multiple of G and
    generator g draws rows ``g * shape[0] / G`` to ``(g + 1) * shape[0] / G``, so each batch element's
    noise depends only on its own generator (the same as a batch of one with that generator).
    """
    if isinstance(generator, (list, tuple)):
        if not generator or shape[0] % len(generator):
            raise ValueError(f"{len(generator)} generators cannot split a batch of {shape[0]}")
        rows = (shape[0] // len(generator), *shape[1:])
        return torch.cat([random_normal(rows, g, device, dtype) for g in generator], dim=0)
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def random_uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, then moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


def random_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Training timesteps int64 [B] uniform in [0, num_train_timesteps)."""
    gen_device = generator.device if generator is not None else device
    t = torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=gen_device)
    return t.to(device)


def ddim_sample(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    shape: tuple[int, ...],
    num_inference_steps: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> torch.Tensor:
    """Run the DDIM loop and return the clean sample x_0 (normalised units).

    Args:
        denoise: ``denoise(x_t [shape], t [B]) -> model output [shape]`` (the scheduler's
            ``prediction_type`` says what it predicts).
        scheduler: a diffusers ``DDIMScheduler`` (its timesteps are set here).
        shape: (B, T, 2).
        num_inference_steps: >= 1.
        generator: draws the initial noise x_T ~ N(0, I); the loop itself is deterministic (eta = 0).
            A sequence of generators splits the batch between them (see :func:`random_normal`).
    Returns:
        float32 [shape]: the last step's estimate of x_0.
    """
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps: must be an integer >= 1, got {num_inference_steps!r}")
    max_steps = scheduler.config.num_train_timesteps
    if num_inference_steps > max_steps:
        raise ValueError(f"num_inference_steps: {num_inference_steps} exceeds num_train_timesteps {max_steps}")
    scheduler.set_timesteps(num_inference_steps, device=device)
    sample = random_normal(shape, generator, device) * scheduler.init_noise_sigma  # x_T
    batch = shape[0]
    x0 = sample
    for t in scheduler.timesteps:
        model_output = denoise(sample, t.expand(batch))
        step = scheduler.step(model_output, t, sample, eta=0.0)
        sample, x0 = step.prev_sample, step.pred_original_sample
    return x0
