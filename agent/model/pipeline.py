"""Inference pipelines: inputs -> planned trajectory, with per-stage timings.

``load_pipeline(path, device)`` reads a checkpoint folder and returns the pipeline of its model type;
both pipelines have the same call and return a :class:`PlanOutput`::

    pipe = load_pipeline("weights/ik-tiny", device="cpu")
    out = pipe(DrivingInputs(...), num_inference_steps=None, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
import numbers
import os
import time

import torch

from .configuration import IKDriveConfig, ShortcutConfig, load_config
from .diffusion import build_inference_scheduler, ddim_sample
from .interfaces import DrivingInputs, PlanOutput
from .modeling import IKDriveModel
from .shortcut import ShortcutModel


class _Stopwatch:
    """Wall-clock marks in ms; waits for queued GPU work before each mark."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.start = self.last = self._now()
        self.timings: dict[str, float] = {}

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def mark(self, stage: str) -> None:
        now = self._now()
        self.timings[stage] = (now - self.last) * 1e3
        self.last = now

    def finish(self) -> dict[str, float]:
        self.timings["total"] = (self._now() - self.start) * 1e3
        return self.timings


def _check_steps(steps: object, maximum: int | None) -> int:
    """``steps`` as an int; ``ValueError`` unless it is an integer in [1, maximum]."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"num_inference_steps: must be an integer >= 1, got {steps!r}")
    if maximum is not None and steps > maximum:
        raise ValueError(f"num_inference_steps: {steps} exceeds the {maximum} training timesteps")
    return int(steps)


def _check_fraction(slowest_fraction: object) -> float:
    """``slowest_fraction`` as a float; ``ValueError`` unless it is a number in (0, 1]."""
    if (isinstance(slowest_fraction, bool) or not isinstance(slowest_fraction, numbers.Real)
            or not 0.0 < float(slowest_fraction) <= 1.0):
        raise ValueError(f"slowest_fraction: must be a number in (0, 1], got {slowest_fraction!r}")
    return float(slowest_fraction)


def reduce_samples(samples: torch.Tensor, slowest_fraction: float = 1.0) -> torch.Tensor:
    """The plan of S diffusion draws per input: ``samples`` [B, S, T, 2] (m, ego frame) -> [B, T, 2].

    The mean of the ``ceil(slowest_fraction * S)`` draws whose path is shortest (arc length from
    the ego through the T waypoints, i.e. the slowest plans; ties keep the earlier draw). With 1.0
    (or one draw) it is the plain mean of all draws.
    """
    s = samples.shape[1]
    keep = max(1, math.ceil(_check_fraction(slowest_fraction) * s - 1e-9))
    if keep >= s:
        return samples.mean(dim=1)
    origin = samples.new_zeros(samples.shape[0], s, 1, 2)
    length = torch.cat([origin, samples], dim=2).diff(dim=2).norm(dim=-1).sum(dim=-1)  # [B, S] m
    chosen = length.argsort(dim=1, stable=True)[:, :keep]  # [B, keep]
    return samples.gather(1, chosen[:, :, None, None].expand(-1, -1, *samples.shape[2:])).mean(dim=1)


def _check_samples(num_samples: object) -> int:
    """``num_samples`` as an int; ``ValueError`` unless it is an integer >= 1."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
        raise ValueError(f"num_samples: must be an integer >= 1, got {num_samples!r}")
    return int(num_samples)


class _PipelineBase:
    def __init__(self, model) -> None:
        self.model = model

    @property
    def config(self) -> IKDriveConfig | ShortcutConfig:
        """The model config: ``num_cameras``, ``image_size`` (H, W), ``num_waypoints``, ``waypoint_dt``."""
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> "_PipelineBase":
        self.model.to(torch.device(device))
        return self

    def _prepare(self, inputs: DrivingInputs) -> DrivingInputs:
        if not isinstance(inputs, DrivingInputs):
            raise TypeError(f"inputs: expected DrivingInputs, got {type(inputs).__name__}")
        inputs.validate(self.config.num_cameras, self.config.image_size, self.model.token_shape)
        return inputs.to(self.device)

    def __call__(
        self,
        inputs: DrivingInputs,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        slowest_fraction: float = 1.0,
    ) -> PlanOutput:
        """Plan for a batch. ``num_samples``: trajectories drawn per input (the diffusion decoder's
        plans vary with the initial noise; a deterministic head ignores it), reduced to one by
        :func:`reduce_samples` with ``slowest_fraction`` (1.0: their mean)."""
        num_samples = _check_samples(num_samples)
        slowest_fraction = _check_fraction(slowest_fraction)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return self._plan(inputs, num_inference_steps, generator, num_samples, slowest_fraction)
        finally:
            self.model.train(was_training)

    def _plan(self, inputs, num_inference_steps, generator, num_samples,
              slowest_fraction) -> PlanOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class IKDrivePipeline(_PipelineBase):
    """Encoder -> VLA (predicted future tokens) -> IK net with a DDIM loop -> trajectory (m).

    Args:
        model: an :class:`IKDriveModel`.
        scheduler: a diffusers DDIM scheduler; built from ``model.config.ik_net`` when omitted.

    Deterministic for a given ``generator`` (it only draws the initial noise; DDIM runs with eta=0).
    Without a generator the global torch RNG is used. A list of B generators, one per input, draws
    each input's noise from its own generator: an input's plan is then the same whatever it is
    batched with (up to float rounding of the batched matrix products). With ``num_samples`` S > 1 the IK net denoises
    S noise draws per input in one batch (encoder and VLA run once) and the plan is their mean, or with
    ``slowest_fraction`` < 1 the mean of the slowest of them (:func:`reduce_samples`).
    """

    def __init__(self, model: IKDriveModel, scheduler=None) -> None:
        if not isinstance(model, IKDriveModel):
            raise TypeError(f"model: expected IKDriveModel, got {type(model).__name__}")
        super().__init__(model)
        self.scheduler = scheduler if scheduler is not None else build_inference_scheduler(model.config.ik_net)

    def _plan(self, inputs, num_inference_steps, generator, num_samples, slowest_fraction) -> PlanOutput:
        model = self.model
        steps = self._steps(num_inference_steps)
        watch = _Stopwatch(self.device)
        inputs = self._prepare(inputs)
        current = model.current_tokens(inputs)  # [B, K, D]
        watch.mark("encoder")
        input_ids, attention_mask = model.tokenize(inputs)
        future = model.vla(input_ids, attention_mask, current, model.prompt_status(inputs))  # [B, F K, D]
        watch.mark("vla")
        trajectory = self._decode(current, future, steps, generator, num_samples, slowest_fraction)  # [B, T, 2]
        watch.mark("ik_net")
        return PlanOutput(trajectory=trajectory.float(), future_tokens=future.float(), timings=watch.finish())

    def decode(
        self,
        current_tokens: torch.Tensor,
        future_tokens: torch.Tensor,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        slowest_fraction: float = 1.0,
    ) -> torch.Tensor:
        """The IK net alone: trajectory [B, T, 2] (m, ego frame) from given current and future
        tokens ([B, K, D] and [B, F K, D]), e.g. to plan with other future tokens than the VLA's."""
        with torch.inference_mode():
            return self._decode(current_tokens, future_tokens, self._steps(num_inference_steps), generator,
                                _check_samples(num_samples), _check_fraction(slowest_fraction))

    def _steps(self, num_inference_steps: int | None) -> int:
        ik = self.model.config.ik_net
        return _check_steps(ik.num_inference_steps if num_inference_steps is None else num_inference_steps,
                            ik.num_train_timesteps)

    def _decode(self, current, future, steps, generator, num_samples, slowest_fraction) -> torch.Tensor:
        ik_net = self.model.ik_net
        batch = current.shape[0]
        memory = ik_net.encode_memory(current, future)  # [B, (1+F) K, W], shared by all steps
        kv = ik_net.memory_keys_values(memory, repeats=num_samples)  # per block [B S, h, (1+F) K, W/h]
        shape = (batch * num_samples, self.config.num_waypoints, 2)
        x0 = ddim_sample(
            lambda x, t: ik_net.denoise(x, t, None, memory_kv=kv), self.scheduler, shape, steps, generator, self.device
        )  # [B S, T, 2] normalised
        samples = self.model.normalizer.unnormalize(x0)  # [B S, T, 2] m, ego frame
        return reduce_samples(samples.view(batch, num_samples, *samples.shape[1:]), slowest_fraction)  # [B, T, 2]


class ShortcutPipeline(_PipelineBase):
    """Encoder -> LLM with waypoint queries -> MLP head -> trajectory (m).

    Same call as :class:`IKDrivePipeline`; ``num_inference_steps``, ``generator`` and ``num_samples``
    are accepted and unused (the head is a deterministic regression: every sample is the same). ``future_tokens`` is ``None``; the "ik_net"
    timing is the regression head (with un-normalisation).
    """

    def __init__(self, model: ShortcutModel) -> None:
        if not isinstance(model, ShortcutModel):
            raise TypeError(f"model: expected ShortcutModel, got {type(model).__name__}")
        super().__init__(model)

    def _plan(self, inputs, num_inference_steps, generator, num_samples, slowest_fraction) -> PlanOutput:
        if num_inference_steps is not None:
            _check_steps(num_inference_steps, None)
        model = self.model
        watch = _Stopwatch(self.device)
        inputs = self._prepare(inputs)
        current = model.current_tokens(inputs)  # [B, K, D]
        watch.mark("encoder")
        input_ids, attention_mask = model.tokenize(inputs)
        hidden = model.vla(input_ids, attention_mask, current, model.prompt_status(inputs))  # [B, T, D_llm]
        watch.mark("vla")
        trajectory = model.normalizer.unnormalize(model.head(hidden).float())  # [B, T, 2] m
        watch.mark("ik_net")
        return PlanOutput(trajectory=trajectory.float(), future_tokens=None, timings=watch.finish())


MODEL_CLASSES = {IKDriveConfig.model_type: IKDriveModel, ShortcutConfig.model_type: ShortcutModel}


def build_pipeline(model: IKDriveModel | ShortcutModel) -> IKDrivePipeline | ShortcutPipeline:
    """The pipeline that fits an in-memory model."""
    if isinstance(model, IKDriveModel):
        return IKDrivePipeline(model)
    if isinstance(model, ShortcutModel):
        return ShortcutPipeline(model)
    raise TypeError(f"model: expected IKDriveModel or ShortcutModel, got {type(model).__name__}")


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> IKDriveModel | ShortcutModel:
    """Load a checkpoint folder as the model class named by its config's ``model_type``."""
    config = load_config(path)
    return MODEL_CLASSES[config.model_type].from_pretrained(path, device=device)


def load_pipeline(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> IKDrivePipeline | ShortcutPipeline:
    """Load a checkpoint folder (IK model or shortcut baseline) and wrap it in its pipeline."""
    return build_pipeline(load_model(path, device=device))
