"""``carla-eval collect``: record a training dataset with the privileged expert.

    carla-eval collect --backend sandbox --routes routes/sandbox/bench.xml --out data/sandbox/train \\
        --workers 2 --noise default --seed 0 --repetitions 2

Drives the backend's expert over every route (x repetitions), perturbing its controls in short
random segments (``--noise``; the expert's plan from the true state stays the label of record), and
writes one episode file per route run plus ``manifest.json`` into ``--out``. Episodes already there
that verify are kept (an interrupted collection resumes). Format and labels: docs/training.md.

On-policy collection (DAgger): ``--policy agent/ik_agent.py --policy-config weights/ik-tiny/agent.yaml
--beta 0.3`` lets that agent drive; in each ``--beta-window`` the expert drives instead with
probability ``--beta``. The expert still labels every state it reaches with its plan from the true
state, and each episode records who drove (``student_drove``).
Registered with ``carla-eval`` through the ``carla_eval.commands`` entry points;
also runnable as ``python -m training.cli_collect ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from carla_eval.commands import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``carla-eval collect``."""
    parser.add_argument("--backend", default="sandbox", help="simulator backend (sandbox; carla needs an expert)")
    parser.add_argument("--routes", nargs="+", required=True, help="leaderboard route XML file(s)")
    parser.add_argument("--route-ids", default=None, help="comma-separated route ids to keep (default: all)")
    parser.add_argument("--out", required=True, help="dataset folder (episodes + manifest.json)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one simulator each")
    parser.add_argument("--repetitions", type=int, default=1, help="runs per route (different seeds)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; run i uses seed + 1000 i")
    parser.add_argument("--noise", default="default",
                        help="control perturbations: none | default | key=value,... "
                             "(rate=Hz, duration=a-b s, steer=max offset, longitudinal_prob=p, warmup_s=s)")
    parser.add_argument("--agent-config", default=None,
                        help="agent YAML whose input decoding (rig, geo-reference, acceleration, route planner) to record")
    parser.add_argument("--expert-config", default="", help="passed to the expert's setup()")
    parser.add_argument("--max-ticks", type=int, default=None, help="stop each route after this many ticks")
    parser.add_argument("--frame-stride", type=int, default=2, help="keep every n-th 20 Hz tick (2 = 10 Hz)")
    parser.add_argument("--horizon", type=float, default=3.0, help="future visual state, seconds ahead")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--ground-truth", action="store_true",
                        help="also record each camera's depth and semantic ground truth (perspective cameras)")
    parser.add_argument("--camera-shift", default="none",
                        help="shift the camera rig of some episodes and re-express their labels (training.camera_shift): "
                             "none | default (half the episodes, 0.1-1.0 m, 5-12.5 deg) | p=P,shift=a-b,yaw=a-b")
    parser.add_argument("--policy", default=None,
                        help="on-policy collection (DAgger): a leaderboard agent file that drives, e.g. agent/ik_agent.py; "
                             "the expert still labels every state with its plan from the true state")
    parser.add_argument("--policy-config", default="", help="passed to the --policy agent's setup() (its agent YAML)")
    parser.add_argument("--beta", type=float, default=0.0,
                        help="with --policy: probability that the expert's control is applied in a window (default 0)")
    parser.add_argument("--beta-window", type=float, default=1.0,
                        help="with --policy: seconds per driver window (the driver is drawn once per window)")


def run(args: argparse.Namespace) -> int:
    """Run the collection; returns the process exit code (1 when some routes failed)."""
    from agent.rigs import get_rig
    from training.collection import CollectConfig, DecodeSettings, NoiseConfig, OnPolicyConfig, run_collection
    from training.camera_shift import CameraShiftConfig
    from training.recording import RecorderConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        noise = NoiseConfig.parse(args.noise)
        camera_shift = CameraShiftConfig.parse(args.camera_shift)
        rig = get_rig(DecodeSettings.from_agent_config(args.agent_config).rig)
        recorder = RecorderConfig(cameras=rig.camera_ids, frame_stride=args.frame_stride, horizon_s=args.horizon,
                                  image_format=args.image_format, jpeg_quality=args.jpeg_quality,
                                  ground_truth=args.ground_truth)
        if args.policy is None and (args.policy_config or args.beta != 0.0):
            raise ValueError("--policy-config and --beta need --policy")
        policy = (OnPolicyConfig(args.policy, args.policy_config, args.beta, args.beta_window)
                  if args.policy is not None else None)
        cfg = CollectConfig(
            routes=tuple(args.routes), out=args.out, backend=args.backend, repetitions=args.repetitions,
            seed=args.seed, workers=args.workers, noise=noise, recorder=recorder, agent_config=args.agent_config,
            expert_config=args.expert_config, max_ticks=args.max_ticks,
            route_ids=tuple(args.route_ids.split(",")) if args.route_ids else None, policy=policy,
            camera_shift=camera_shift,
        )
        manifest = run_collection(cfg, progress=lambda e: print(
            f"{e['file']}: {e.get('num_frames', 0)} frames, {e.get('status', 'FAILED')}"
            + (f" ({e['wall_s']} s)" if "wall_s" in e else "") + (f"\n  error: {e['error']}" if "error" in e else ""),
            flush=True))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = manifest["totals"]
    print(f"{args.out}: {t['episodes']} episodes, {t['frames']} frames ({t['perturbed_frames']} perturbed"
          + (f", {t['student_frames']} driven by the student" if policy is not None else "") + f"), {t['failed']} failed")
    return 1 if t["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.cli_collect", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


COMMAND = Command("collect", "record a training dataset with the privileged expert", add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
