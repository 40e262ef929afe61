"""The DDIM sampling loop and the schedulers, independent of any network."""

from __future__ import annotations

import pytest
import torch

from agent.model import build_inference_scheduler, build_train_scheduler, ddim_sample
from agent.model.configuration import IKNetConfig


def oracle(scheduler, x0: torch.Tensor, prediction_type: str):
    """A perfect denoiser for a known clean sample x0."""
    alphas = scheduler.alphas_cumprod

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if prediction_type == "sample":
            return x0.clone()
        a = alphas[t].to(x_t.dtype).view(-1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()  # the noise that explains x_t

    return denoise


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10])
def test_perfect_denoiser_recovers_the_sample_for_any_step_count(prediction_type, steps):
    cfg = IKNetConfig(prediction_type=prediction_type)
    scheduler = build_inference_scheduler(cfg)
    x0 = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(0))
    calls = []

    def counted(x, t):
        calls.append(int(t[0]))
        assert t.shape == (3,)
        return oracle(scheduler, x0, prediction_type)(x, t)

    out = ddim_sample(counted, scheduler, (3, 6, 2), steps, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert len(calls) == steps
    assert calls[0] == cfg.num_train_timesteps - 1  # trailing spacing: start from pure noise
    assert calls == sorted(calls, reverse=True)
    # Recovering x0 from a noise prediction divides by sqrt(alpha_bar_999) ~ 5e-5, so float32
    # rounding is amplified at the first step (one reason "sample" is the default prediction type).
    tol = 1e-4 if prediction_type == "sample" else 1e-2
    torch.testing.assert_close(out, x0, rtol=tol, atol=tol)


def test_loop_is_deterministic_per_generator_and_validates_steps():
    scheduler = build_inference_scheduler(IKNetConfig())

    def shrink(x, t):
        return 0.5 * x

    a = ddim_sample(shrink, scheduler, (2, 4, 2), 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    b = ddim_sample(shrink, scheduler, (2, 4, 2), 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    c = ddim_sample(shrink, scheduler, (2, 4, 2), 3, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            ddim_sample(shrink, scheduler, (2, 4, 2), bad, None, torch.device("cpu"))


def test_train_and_inference_schedulers_share_the_noise_schedule():
    cfg = IKNetConfig(beta_schedule="squaredcos_cap_v2", num_train_timesteps=500, prediction_type="epsilon")
    train, infer = build_train_scheduler(cfg), build_inference_scheduler(cfg)
    assert torch.equal(train.alphas_cumprod, infer.alphas_cumprod)
    assert train.config.prediction_type == infer.config.prediction_type == "epsilon"
    x0, noise = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    noisy = train.add_noise(x0, noise, torch.tensor([0]))
    torch.testing.assert_close(noisy, x0 * train.alphas_cumprod[0].sqrt())
