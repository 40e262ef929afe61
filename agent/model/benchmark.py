"""Latency and size of a model preset on the current device.

    python -m agent.model.benchmark --preset tiny [--steps 3] [--batch 1] [--device cpu]
                                    [--runs 50] [--warmup 10] [--threads N] [--model-type shortcut]
    python -m agent.model.benchmark --checkpoint weights/ik-tiny
    python -m agent.model.benchmark --preset 0.5b --llm-path DIR --vision-path DIR
    python -m agent.model.benchmark --preset 0.5b-random --device cuda [--fast on|off|auto]
                                    [--dtype bfloat16] [--no-compile] [--no-cuda-graphs]

Prints per-stage latency of the pipeline call (encoder, VLA, IK net, total: median and p90 over
``--runs`` calls after ``--warmup`` calls), the IK net's latency per denoising step (one network
evaluation, measured on its own), and parameter counts per module.

With the fast path (``--fast on``; ``auto``, the default, turns it on for CUDA devices) the same run
then times :class:`agent.model.fast.FastIKDrivePipeline` (``--dtype``, static shapes,
``torch.compile``, CUDA graphs on CUDA) on the same inputs and prints its stages next to the fp32
eager baseline above, with the ratio baseline / fast per stage. Its warm-up calls (at least 3)
include the compilation; their time is printed separately.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from .interfaces import DrivingInputs
from .pipeline import IKDrivePipeline, build_pipeline, load_model
from .presets import PRESET_NAMES, build_preset

STAGES = ("encoder", "vla", "ik_net", "total")


@dataclass
class BenchmarkResult:
    """Latencies in ms: ``stages[name] = (median, p90)``; ``ik_net_step`` likewise (None if no IK net)."""

    stages: dict[str, tuple[float, float]]
    ik_net_step: tuple[float, float] | None
    parameters: dict[str, int]
    steps: int
    batch: int
    runs: int


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    data = sorted(values)
    if not data:
        raise ValueError("percentile: no values")
    pos = (len(data) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> tuple[float, float]:
    return statistics.median(values), percentile(values, 90.0)


def random_inputs(config, batch: int, generator: torch.Generator) -> DrivingInputs:
    """Random but well-formed inputs for a config (images in [0, 1], plausible ego status)."""
    h, w = config.image_size
    return DrivingInputs(
        images=torch.rand(batch, config.num_cameras, 3, h, w, generator=generator),
        command=torch.randint(1, 7, (batch,), generator=generator),
        speed=torch.rand(batch, generator=generator) * 15.0,
        acceleration=torch.randn(batch, generator=generator),
        target_point=torch.randn(batch, 2, generator=generator) * 10.0,
    )


def module_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts per top-level submodule, per pretrained-able transformers backbone inside
    them (e.g. "vision.backbone", "vla.reader.llm"), and "total"."""
    from transformers import PreTrainedModel

    counts: dict[str, int] = {}
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        if not n:
            continue
        counts[name] = n
        outer: list[str] = []
        for sub_name, sub in child.named_modules(prefix=name):
            inside = any(sub_name.startswith(o + ".") for o in outer)
            if sub is not child and isinstance(sub, PreTrainedModel) and not inside:
                outer.append(sub_name)
                counts[f"  {sub_name}"] = sum(p.numel() for p in sub.parameters())
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def run_benchmark(pipe, steps: int, batch: int, runs: int, warmup: int, seed: int = 0,
                  num_samples: int = 1) -> BenchmarkResult:
    """Time ``pipe`` on random inputs (``num_samples`` averaged draws per plan); see :class:`BenchmarkResult`."""
    gen = torch.Generator().manual_seed(seed)
    inputs = random_inputs(pipe.config, batch, gen)
    is_ik = isinstance(pipe, IKDrivePipeline)
    call_steps = steps if is_ik else None
    for _ in range(warmup):
        pipe(inputs, num_inference_steps=call_steps, generator=torch.Generator().manual_seed(seed), num_samples=num_samples)
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for i in range(runs):
        out = pipe(inputs, num_inference_steps=call_steps, generator=torch.Generator().manual_seed(seed + i),
                   num_samples=num_samples)
        for s in STAGES:
            samples[s].append(out.timings[s])
    step_stats = None
    if is_ik:
        step_stats = summary(_time_ik_step(pipe, out.future_tokens, inputs, runs, warmup))
    return BenchmarkResult(
        stages={s: summary(v) for s, v in samples.items()},
        ik_net_step=step_stats,
        parameters=module_parameters(pipe.model),
        steps=steps if is_ik else 0,
        batch=batch,
        runs=runs,
    )


def _time_ik_step(pipe: IKDrivePipeline, future: torch.Tensor, inputs: DrivingInputs, runs: int, warmup: int) -> list[float]:
    """Milliseconds of one IK net evaluation (memory precomputed, as in the sampling loop)."""
    model, device = pipe.model, pipe.device
    b = future.shape[0]
    times = []
    with torch.inference_mode():
        current = model.vision(inputs.to(device).images)
        memory = model.ik_net.encode_memory(current, future.to(device))
        x = torch.randn(b, model.config.num_waypoints, 2, device=device)
        t = torch.full((b,), 500, device=device, dtype=torch.int64)
        for i in range(warmup + runs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.ik_net.denoise(x, t, memory)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def run_fast_benchmark(model, steps: int, batch: int, runs: int, warmup: int, seed: int = 0, num_samples: int = 1,
                       dtype: str = "bfloat16", compile: bool = True, cuda_graphs: bool = True) -> tuple[BenchmarkResult, float]:
    """Time the fast path on ``model`` (cast in place) with the inputs of :func:`run_benchmark`;
    returns the result and the seconds of the warm-up calls (compilation included)."""
    from .fast import FastIKDrivePipeline, FastPathConfig

    fast = FastIKDrivePipeline(model, FastPathConfig(dtype=dtype, compile=compile, cuda_graphs=cuda_graphs,
                                                     batch_size=batch, num_inference_steps=steps,
                                                     num_samples=num_samples))
    inputs = random_inputs(model.config, batch, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    for _ in range(max(3, warmup)):
        fast(inputs, generator=torch.Generator().manual_seed(seed))
    warm_s = time.perf_counter() - start
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    for i in range(runs):
        out = fast(inputs, generator=torch.Generator().manual_seed(seed + i))
        for s in STAGES:
            samples[s].append(out.timings[s])
    result = BenchmarkResult(stages={s: summary(v) for s, v in samples.items()}, ik_net_step=None,
                             parameters={}, steps=steps, batch=batch, runs=runs)
    return result, warm_s


def format_comparison(baseline: BenchmarkResult, fast: BenchmarkResult, title: str) -> str:
    """Per-stage medians of the fp32 eager baseline and the fast path, and their ratio."""
    lines = [title, "stage        fp32 eager ms   fast ms   ratio (eager / fast)"]
    for stage in STAGES:
        b, f = baseline.stages[stage][0], fast.stages[stage][0]
        ratio = b / f if f > 0 else float("inf")
        lines.append(f"{stage:<12} {b:13.2f} {f:9.2f} {ratio:9.2f}x")
    return "\n".join(lines)


def machine_description(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"CPU: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"
    if hasattr(os, "getloadavg"):
        text += f"; load average {os.getloadavg()[0]:.2f}"
    if device.type == "cuda":
        text += f"; GPU: {torch.cuda.get_device_name(device)}"
    return text


def format_result(result: BenchmarkResult, title: str) -> str:
    steps = result.steps if result.ik_net_step is not None else "n/a (regression head)"
    lines = [title, f"batch {result.batch}, DDIM steps {steps}, {result.runs} runs", "", "stage        median ms   p90 ms"]
    for stage, (med, p90) in result.stages.items():
        lines.append(f"{stage:<12} {med:9.2f} {p90:8.2f}")
    if result.ik_net_step is not None:
        med, p90 = result.ik_net_step
        lines.append(f"{'ik_net/step':<12} {med:9.2f} {p90:8.2f}")
    lines += ["", "module                          parameters"]
    for name, n in result.parameters.items():
        lines.append(f"{name:<30} {n:12,d}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.model.benchmark", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=PRESET_NAMES, default="tiny")
    source.add_argument("--checkpoint", help="a checkpoint folder instead of a preset")
    parser.add_argument("--model-type", choices=("ik_drive", "shortcut"), default="ik_drive")
    parser.add_argument("--llm-path", help="local Qwen2.5-0.5B-Instruct folder (preset 0.5b)")
    parser.add_argument("--vision-path", help="local DINOv3 ViT-S/16 folder (preset 0.5b)")
    parser.add_argument("--num-cameras", type=int, default=None, help="preset override")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), default=None, help="preset override")
    parser.add_argument("--steps", type=int, default=3, help="DDIM steps")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1, help="diffusion draws averaged per plan (agent num_samples)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--fast", choices=("auto", "on", "off"), default="auto",
                        help="also time the fast path against this fp32 eager baseline (auto: on for CUDA)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16", help="fast path dtype")
    parser.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="fast path without CUDA graphs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.runs < 1 or args.samples < 1 or args.warmup < 0:
        parser.error("--steps, --batch, --samples and --runs must be >= 1, --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.checkpoint:
        model = load_model(args.checkpoint, device=device)
        title = f"checkpoint {args.checkpoint} ({model.config.model_type}) on {device}"
    else:
        overrides = {"model_type": args.model_type}
        if args.num_cameras is not None:
            overrides["num_cameras"] = args.num_cameras
        if args.image_size is not None:
            overrides["image_size"] = tuple(args.image_size)
        model = build_preset(args.preset, llm_path=args.llm_path, vision_path=args.vision_path, **overrides)
        model = model.to(device)
        cfg = model.config
        title = (
            f"preset {args.preset} ({args.model_type}), {cfg.num_cameras} camera(s) "
            f"{cfg.image_size[0]}x{cfg.image_size[1]} (HxW), on {device}"
        )
    if not model.normalizer.is_fitted:
        # Latency does not depend on the statistics; fit on synthetic trajectories for realism.
        t = torch.arange(1, model.config.num_waypoints + 1, dtype=torch.float32) * model.config.waypoint_dt
        xs = torch.linspace(0.0, 15.0, 16)[:, None] * t[None, :]
        model.normalizer.fit(torch.stack([xs, torch.zeros_like(xs)], dim=-1))
    pipe = build_pipeline(model)
    result = run_benchmark(pipe, args.steps, args.batch, args.runs, args.warmup, num_samples=args.samples)
    if args.samples > 1:
        title += f", mean of {args.samples} diffusion draws per plan"
    print(format_result(result, title + " [fp32 eager baseline]"))
    fast = args.fast == "on" or (args.fast == "auto" and device.type == "cuda")
    if fast:
        if not isinstance(pipe, IKDrivePipeline):
            parser.error("--fast: the fast path is for the IK model (ik_drive), not the shortcut baseline")
        fast_result, warm_s = run_fast_benchmark(
            model, args.steps, args.batch, args.runs, args.warmup, num_samples=args.samples, dtype=args.dtype,
            compile=not args.no_compile, cuda_graphs=not args.no_cuda_graphs)
        print()
        features = [args.dtype, "static shapes", "torch.compile" if not args.no_compile else "eager"]
        if device.type == "cuda" and not args.no_compile and not args.no_cuda_graphs:
            features.append("CUDA graphs")
        print(format_comparison(result, fast_result, "fast path (" + ", ".join(features) + f"), same inputs, "
                                f"{args.runs} runs; warm-up incl. compilation {warm_s:.1f} s"))
    print()
    print(machine_description(device))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
