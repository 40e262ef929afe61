"""The fast inference path of the IK model: low precision, static shapes, compiled stages.

:class:`FastIKDrivePipeline` plans like :class:`agent.model.pipeline.IKDrivePipeline` (same inputs,
same :class:`PlanOutput`, same DDIM maths with eta = 0) but:

- the model runs in ``dtype`` (bf16 by default; the trajectory normaliser and the DDIM update stay
  fp32) with PyTorch SDPA attention everywhere (the Qwen2 config's ``attn_implementation``);
- every shape is fixed when the pipeline is built: batch ``batch_size``, the prompt right-padded to
  ``prompt_tokens`` (by default the longest prompt the format can produce), ``num_inference_steps``
  and ``num_samples``. Padding is masked out and position ids count real tokens only, so the plan
  does not depend on it;
- the three stages (encoder, VLA pass, IK-net loop: memory + every denoising step unrolled) are
  each one ``torch.compile`` region with ``dynamic=False``; on CUDA, ``cuda_graphs`` compiles them
  in "reduce-overhead" mode (CUDA graphs) so a plan is a few graph replays;
- the ``num_samples`` diffusion draws are one batch of B x S trajectories through the IK net.

The model is cast to ``dtype`` in place: build the fp32 reference before the fast path if both are
needed (``agent.model.benchmark`` does). Python-side work per call: formatting and tokenising the
prompt and drawing the initial noise (from ``generator``, on its device, as the eager pipeline).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .diffusion import build_inference_scheduler, random_normal
from .interfaces import DrivingInputs, PlanOutput
from .modeling import IKDriveModel
from .tokenization import format_prompt

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class FastPathConfig:
    """Settings of :class:`FastIKDrivePipeline` (all shapes are fixed by them).

    Attributes:
        dtype: "bfloat16", "float16" or "float32": the weights and activations of the networks.
        compile: ``torch.compile`` the encoder, the VLA pass and the IK-net loop.
        cuda_graphs: on CUDA, compile in "reduce-overhead" mode (CUDA graphs); ignored on CPU.
        batch_size: B, the only batch size the pipeline accepts.
        num_inference_steps: DDIM steps (None: the model's default).
        num_samples: S diffusion draws per input, denoised as one batch and averaged.
        prompt_tokens: static prompt length (None: the longest prompt of the format, see
            :func:`longest_prompt_tokens`); a longer prompt raises ``ValueError``.
    """

    dtype: str = "bfloat16"
    compile: bool = True
    cuda_graphs: bool = True
    batch_size: int = 1
    num_inference_steps: Optional[int] = None
    num_samples: int = 1
    prompt_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {sorted(DTYPES)}")
        for name in ("batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps: must be >= 1, got {self.num_inference_steps}")
        if self.prompt_tokens is not None and self.prompt_tokens < 1:
            raise ValueError(f"prompt_tokens: must be >= 1, got {self.prompt_tokens}")


def longest_prompt_tokens(tokenizer) -> int:
    """Tokens of the longest prompt: the longest command words and numbers of the widest form
    (speed and acceleration within +-99.9, target within +-999.9 m)."""
    worst = max(
        (format_prompt(c, -99.9, -99.9, -999.9, -999.9) for c in (1, 2, 3, 4, 5, 6)),
        key=lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    )
    return len(tokenizer(worst, add_special_tokens=False)["input_ids"])


@dataclass(frozen=True)
class DDIMPlan:
    """The DDIM (eta = 0) update of every step, precomputed from the diffusers scheduler.

    ``timesteps`` int64 [S]; per step the square roots of alpha-bar at t and at the previous
    timestep (1 after the last step, ``set_alpha_to_one``): x_{t-1} = sqrt(a_prev) x0^ + sqrt(1 - a_prev) eps^.
    """

    timesteps: tuple[int, ...]
    sqrt_alpha: tuple[float, ...]
    sqrt_one_minus_alpha: tuple[float, ...]
    sqrt_alpha_prev: tuple[float, ...]
    sqrt_one_minus_alpha_prev: tuple[float, ...]
    prediction_type: str


def ddim_plan(scheduler, num_inference_steps: int) -> DDIMPlan:
    """The :class:`DDIMPlan` that ``scheduler.step`` (DDIMScheduler, eta = 0) would follow."""
    scheduler.set_timesteps(num_inference_steps)
    alphas = scheduler.alphas_cumprod.double()
    final = float(scheduler.final_alpha_cumprod)
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    ts, sa, s1a, sap, s1ap = [], [], [], [], []
    for t in scheduler.timesteps.tolist():
        prev = t - stride
        a, a_prev = float(alphas[t]), (float(alphas[prev]) if prev >= 0 else final)
        ts.append(int(t))
        sa.append(math.sqrt(a))
        s1a.append(math.sqrt(1.0 - a))
        sap.append(math.sqrt(a_prev))
        s1ap.append(math.sqrt(1.0 - a_prev))
    return DDIMPlan(tuple(ts), tuple(sa), tuple(s1a), tuple(sap), tuple(s1ap), scheduler.config.prediction_type)


def ddim_loop(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, plan: DDIMPlan) -> torch.Tensor:
    """Every DDIM step of ``plan`` from x_T [N, T, 2] (fp32); returns the last estimate of x_0."""
    n = x.shape[0]
    x0 = x
    for i, t in enumerate(plan.timesteps):
        out = denoise(x, torch.full((n,), t, dtype=torch.int64, device=x.device)).float()  # [N, T, 2]
        if plan.prediction_type == "sample":
            x0 = out
            eps = (x - plan.sqrt_alpha[i] * x0) / plan.sqrt_one_minus_alpha[i]
        else:
            eps = out
            x0 = (x - plan.sqrt_one_minus_alpha[i] * eps) / plan.sqrt_alpha[i]
        x = plan.sqrt_alpha_prev[i] * x0 + plan.sqrt_one_minus_alpha_prev[i] * eps  # x_{t-1}
    return x0


class FastIKDrivePipeline:
    """Encoder -> VLA -> IK-net loop with fixed shapes, low precision and compiled stages.

    ``pipe(inputs, generator=None) -> PlanOutput`` (trajectory [B, T, 2] fp32 m, ego frame; the
    future tokens [B, K, D] fp32; timings in ms per stage, the first calls include compilation).
    """

    def __init__(self, model: IKDriveModel, config: FastPathConfig = FastPathConfig()) -> None:
        if not isinstance(model, IKDriveModel):
            raise TypeError(f"model: expected IKDriveModel, got {type(model).__name__}")
        if not model.normalizer.is_fitted:
            raise ValueError("model: the trajectory normaliser is not fitted")
        self.config = config
        self.dtype = DTYPES[config.dtype]
        self.model = model.eval()
        model.to(self.dtype)
        model.normalizer.float()  # statistics and un-normalisation stay fp32
        ik = model.config.ik_net
        self.steps = ik.num_inference_steps if config.num_inference_steps is None else config.num_inference_steps
        if self.steps > ik.num_train_timesteps:
            raise ValueError(f"num_inference_steps: {self.steps} exceeds the {ik.num_train_timesteps} training timesteps")
        self.plan = ddim_plan(build_inference_scheduler(ik), self.steps)
        self.prompt_tokens = config.prompt_tokens or longest_prompt_tokens(model.tokenizer)
        self.pad_id = int(model.tokenizer.pad_token_id)
        on_cuda = self.device.type == "cuda"
        self.cuda_graphs = bool(config.compile and config.cuda_graphs and on_cuda)
        mode = "reduce-overhead" if self.cuda_graphs else None
        wrap = (lambda fn: torch.compile(fn, mode=mode, dynamic=False)) if config.compile else (lambda fn: fn)
        self._encode = wrap(self._encode_eager)
        self._vla = wrap(self._vla_eager)
        self._ik = wrap(self._ik_eager)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ stages (compiled)
    def _encode_eager(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.vision(images.to(self.dtype)).to(self.dtype)  # [B, K, D]

    def _vla_eager(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, current: torch.Tensor,
                   status: Optional[torch.Tensor]) -> torch.Tensor:
        return self.model.vla(input_ids, attention_mask, current, status).to(self.dtype)  # [B, K, D]

    def _ik_eager(self, current: torch.Tensor, future: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        ik_net = self.model.ik_net
        s = self.config.num_samples
        memory = ik_net.encode_memory(current, future)  # [B, 2K, W]
        if s > 1:
            memory = memory.repeat_interleave(s, dim=0)  # [B S, 2K, W]
        x0 = ddim_loop(lambda x, t: ik_net.denoise(x, t, memory), noise, self.plan)  # [B S, T, 2] normalised
        samples = self.model.normalizer.unnormalize(x0)  # [B S, T, 2] m
        return samples.view(current.shape[0], s, *samples.shape[1:]).mean(dim=1)  # [B, T, 2]

    # ------------------------------------------------------------------ call
    def tokenize(self, inputs: DrivingInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt ids and mask [B, ``prompt_tokens``], right-padded (static shape)."""
        ids, mask = self.model.tokenize(inputs)  # [B, L]
        length = ids.shape[1]
        if length > self.prompt_tokens:
            raise ValueError(f"prompt of {length} tokens exceeds the static prompt length {self.prompt_tokens}")
        pad = self.prompt_tokens - length
        if pad:
            ids = torch.cat([ids, ids.new_full((ids.shape[0], pad), self.pad_id)], dim=1)
            mask = torch.cat([mask, mask.new_zeros((mask.shape[0], pad))], dim=1)
        return ids, mask

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _run(self, fn, *args) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = fn(*args)
        return out.clone() if self.cuda_graphs else out  # graph outputs are reused by the next replay

    def __call__(self, inputs: DrivingInputs, generator: Optional[torch.Generator] = None) -> PlanOutput:
        cfg = self.model.config
        if not isinstance(inputs, DrivingInputs):
            raise TypeError(f"inputs: expected DrivingInputs, got {type(inputs).__name__}")
        inputs.validate(cfg.num_cameras, cfg.image_size)
        b = inputs.images.shape[0]
        if b != self.config.batch_size:
            raise ValueError(f"batch of {b}: this fast pipeline was built for batch_size {self.config.batch_size}")
        inputs = inputs.to(self.device)
        timings = {}
        with torch.inference_mode():
            start = last = self._sync()
            current = self._run(self._encode, inputs.images)
            now = self._sync()
            timings["encoder"], last = (now - last) * 1e3, now
            ids, mask = self.tokenize(inputs)
            future = self._run(self._vla, ids, mask, current, self.model.prompt_status(inputs))
            now = self._sync()
            timings["vla"], last = (now - last) * 1e3, now
            shape = (b * self.config.num_samples, cfg.num_waypoints, 2)
            noise = random_normal(shape, generator, self.device)  # x_T, fp32
            trajectory = self._run(self._ik, current, future, noise)
            now = self._sync()
            timings["ik_net"] = (now - last) * 1e3
            timings["total"] = (now - start) * 1e3
        return PlanOutput(trajectory=trajectory.float(), future_tokens=future.float(), timings=timings)
