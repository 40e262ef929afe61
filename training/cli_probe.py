"""``carla-eval probe``: counterfactual grounding probes of one or more trained agents.

    carla-eval probe --agent-config weights/ik-tiny/agent.yaml --agent-config weights/shortcut-tiny/agent.yaml \\
        --data data/sandbox-val --frames 200 --out docs/probe

For held-out frames of a collected dataset: blank the image, insert a stopped vehicle near / far on
the ego's path and off the road, perturb the ego speed in the prompt; report how much the plan
moves (``training.grounding``), as a table (markdown), JSON and PNG plots (``training.probe_report``).
Registered with ``carla-eval`` through the ``carla_eval.commands`` entry points;
also runnable as ``python -m training.cli_probe ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carla_eval.commands import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carla-eval probe``."""
    parser.add_argument("--agent-config", action="append", required=True,
                        help="agent YAML (model folder, rig, sampler seed); repeat to compare models")
    parser.add_argument("--label", action="append", default=None,
                        help="name of each model in the table (default: the model folder's name)")
    parser.add_argument("--data", required=True, help="collected dataset folder (held-out routes)")
    parser.add_argument("--routes", default=None, help="comma-separated route ids to use (default: all)")
    parser.add_argument("--frames", type=int, default=200, help="frames probed (evenly spread)")
    parser.add_argument("--samples", type=int, default=8, help="plans averaged per input (the paper uses 50)")
    parser.add_argument("--seed", type=int, default=None, help="sampler seed (default: the agent config's seed)")
    parser.add_argument("--num-inference-steps", type=int, default=None)
    parser.add_argument("--near", type=float, default=10.0, help="near insertion, m ahead along the path")
    parser.add_argument("--far", type=float, default=20.0, help="far insertion, m ahead along the path")
    parser.add_argument("--offroad-lateral", type=float, default=16.0, help="off-road control, m to the side")
    parser.add_argument("--speed-delta", type=float, default=3.0, help="ego speed perturbation, m/s")
    parser.add_argument("--vehicle-colour", default=None,
                        help="R,G,B of the inserted vehicle (default: the sandbox's vehicle colour)")
    parser.add_argument("--out", default="probe_results", help="output folder (probe.md, probe.json, PNGs)")


def _parse_colour(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3 or not all(0 <= v <= 255 for v in parts):
        raise ValueError(f"--vehicle-colour must be R,G,B in 0..255, got {text!r}")
    return parts[0], parts[1], parts[2]


def default_vehicle_colour() -> tuple[int, int, int]:
    """The colour the sandbox draws other vehicles with (what a real vehicle looks like to the model)."""
    from carla_eval.sandbox.render import RenderStyle

    return tuple(int(v) for v in RenderStyle().vehicle)  # type: ignore[return-value]


def run(args: argparse.Namespace) -> int:
    """Run the probe; returns the process exit code."""
    import torch

    from agent.agent_config import ConfigError, load_agent_config
    from agent.model import load_pipeline
    from agent.rigs import get_rig
    from training.grounding import ProbeConfig, edited_frames, frames_from_dataset, run_probe
    from training.manifest import scan_dataset
    from training.probe_report import write_report

    torch.set_num_threads(1)
    labels = args.label or []
    if labels and len(labels) != len(args.agent_config):
        print(f"error: {len(labels)} --label for {len(args.agent_config)} --agent-config", file=sys.stderr)
        return 2
    try:
        colour = _parse_colour(args.vehicle_colour) if args.vehicle_colour else default_vehicle_colour()
        agents = [load_agent_config(p) for p in args.agent_config]
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    routes = set(args.routes.split(",")) if args.routes else None
    scan = scan_dataset(args.data, route_ids=routes)
    if scan.skipped:
        print(scan.report(), file=sys.stderr)
    if not scan.episodes:
        print(f"error: no usable episodes in {args.data}", file=sys.stderr)
        return 2
    rig = get_rig(agents[0].rig)
    if any(a.rig != rig.name for a in agents):
        print("error: all agents must use the same sensor rig", file=sys.stderr)
        return 2
    specs = [cam.to_sensor() for cam in rig.cameras]
    frames = frames_from_dataset(scan.episodes, rig.camera_ids, args.frames)
    results = {}
    cfg = ProbeConfig()
    for i, agent in enumerate(agents):
        cfg = ProbeConfig(frames=args.frames, samples=args.samples, seed=agent.seed if args.seed is None else args.seed,
                          num_inference_steps=args.num_inference_steps or agent.num_inference_steps,
                          near_m=args.near, far_m=args.far, offroad_lateral_m=args.offroad_lateral,
                          speed_delta=args.speed_delta, vehicle_colour=colour)
        pipe = load_pipeline(agent.model, device=agent.device)
        label = labels[i] if labels else Path(agent.model).name
        results[label] = run_probe(pipe, frames, specs, cfg)
        s = results[label].summary
        print(f"{label}: " + ", ".join(f"{v} L2@3s={s[v]['mean_l2_3s']:.3f}" for v in s))
    example, _ = edited_frames(frames[len(frames) // 2], specs, cfg)
    front = min(range(len(specs)), key=lambda i: abs(float(specs[i].get("yaw", 0.0))))  # the front camera
    examples = {name: example[name]["images"][front]
                for name in ("base", "insert_near", "insert_far", "insert_offroad", "insert_sky") if name in example}
    out = write_report(results, cfg, args.out, examples,
                       extra={"data": str(args.data), "frames": [f.source for f in frames],
                              "agent_configs": [str(p) for p in args.agent_config]})
    print(f"wrote {out / 'probe.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli_probe", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


COMMAND = Command("probe", "counterfactual grounding probes of trained agents", add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
