"""``carla-eval``: run / metrics / export / replay (docs/harness.md), and the subcommands installed
packages register (``carla_eval.commands``): collect and probe from ``training`` (docs/training.md).

Exit codes: 0 success; 1 replay not reproduced; 2 bad input, refused run folder, workers that
cannot start, or run files that cannot be written (one line, files left as they were); 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig, WatchdogConfig

EXIT_OK, EXIT_REPLAY_MISMATCH, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
BUILTIN_COMMANDS = ("run", "metrics", "compare", "export", "replay")


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"backend options are KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def _seconds_or_none(text: str) -> float:
    """``--route-timeout``: seconds, or 0 / none / off for no limit (returned as 0)."""
    if text.strip().lower() in ("none", "off", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carla-eval", description="Closed-loop evaluation of leaderboard agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate an agent on a route file")
    run.add_argument("--backend", default="sandbox", help="sandbox | carla | scripted | package.module:Class")
    run.add_argument("--backend-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                     help="backend constructor option (JSON value or string); repeatable")
    run.add_argument("--routes", required=True, type=Path, help="route XML (leaderboard schema)")
    run.add_argument("--agent", required=True, help="agent .py file with get_entry_point(), or 'expert'")
    run.add_argument("--agent-config", default="", help="passed to agent.setup()")
    run.add_argument("--out", required=True, type=Path, help="run folder (must not exist or be empty, unless --resume)")
    run.add_argument("--workers", type=int, default=None,
                     help="parallel workers, one simulator each (default 1, or every GPU slot with --gpus)")
    run.add_argument("--gpus", default=None, help="GPU ids, e.g. 0,1,2,3: worker slot i gets gpus[i // workers-per-gpu]")
    run.add_argument("--workers-per-gpu", type=int, default=1, help="workers sharing one GPU (with --gpus)")
    run.add_argument("--retry-status", action="append", default=None, metavar="STATUS",
                     help="outcome status to run again (repeatable; 'none' for none). Default: the backend's "
                          "(CARLA: carla_garage's: Failed - Agent couldn't be set up / Failed / "
                          "Failed - Simulation crashed / Failed - Agent crashed)")
    run.add_argument("--record", action="store_true", help="CARLA: keep a recorder file per route (RUN_DIR/recordings)")
    run.add_argument("--weather-table", type=Path, default=None,
                     help="weather.xml (Bench2Drive's leaderboard/data/weather.xml) naming route weathers")
    run.add_argument("--ray-address", default=None, help="run workers as Ray actors: local | auto | HOST:PORT")
    run.add_argument("--routes-subset", default=None, help='route ids, e.g. "0-4,7"')
    run.add_argument("--repetitions", type=int, default=1)
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--video", choices=["failures", "all", "none"], default="failures")
    run.add_argument("--video-seconds", type=float, default=10.0, help="failure videos keep the last N seconds")
    run.add_argument("--video-fps", type=int, choices=[10, 20], default=10)
    run.add_argument("--retries", type=int, default=2, help="retries of a route after a crash")
    run.add_argument("--penalty-formula", choices=["2.0", "2.1"], default="2.0")
    run.add_argument("--route-timeout", type=_seconds_or_none, default=None, metavar="SECONDS|none",
                     help="wall-clock seconds per route attempt (default: derived from the route, see docs/harness.md; "
                          "0 or none: no limit)")
    run.add_argument("--realtime-factor", type=float, default=WatchdogConfig.realtime_factor,
                     help="slowest expected game time / wall time of a route, for the default --route-timeout")
    run.add_argument("--agent-timeout", type=float, default=WatchdogConfig.agent_timeout_s, metavar="SECONDS",
                     help="agent watchdog: limit of one setup()/run_step() call (leaderboard default 300; 0: off)")
    run.add_argument("--allow-code-change", action="store_true",
                     help="--resume under another git revision (every revision is recorded)")
    run.add_argument("--ray-connect-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="time limit for joining --ray-address auto / HOST:PORT")
    run.add_argument("--no-traces", action="store_true", help="do not store traces (no replays)")
    run.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")

    met = sub.add_parser("metrics", help="recompute metrics from one or more run folders (merged)")
    met.add_argument("runs", nargs="+", type=Path, help="run folders or results JSON files")
    met.add_argument("--routes", type=Path, default=None, help="route file the runs must cover (default: from the runs)")
    met.add_argument("--routes-subset", default=None)
    met.add_argument("--repetitions", type=int, default=None)
    met.add_argument("--penalty-formula", choices=["recorded", "2.0", "2.1"], default="recorded")
    met.add_argument("--comfort-strict", action="store_true",
                     help="comfort with rad/s and a true yaw-acceleration derivative (not Bench2Drive-compatible)")
    met.add_argument("--json", type=Path, default=None, help="also write the metrics here (atomic)")
    met.add_argument("--metric-info", action="append", type=Path, default=[], metavar="DIR",
                     help="also look for DIR/<save_name>/metric_info.json (Bench2Drive's SAVE_PATH); repeatable")

    from carla_eval.compare import build_parser as build_compare_parser

    build_compare_parser(sub.add_parser("compare", help="models side by side over seeds (DS, RC, abilities) from their run folders"))

    exp = sub.add_parser("export", help="write a folder Bench2Drive's tools read (merge_route_json.py, ...)")
    exp.add_argument("runs", nargs="+", type=Path, help="run folders or results JSON files")
    exp.add_argument("--out", required=True, type=Path, help="export folder (new or without JSON files)")

    rep = sub.add_parser("replay", help="re-run one recorded sandbox route from its seed and controls")
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--route", required=True, help="route id, record id (RouteScenario_3_rep0) or save_name")
    rep.add_argument("--repetition", type=int, default=None)
    rep.add_argument("--out", type=Path, default=None, help="video file (default RUN_DIR/replays/<save_name>.mp4)")
    rep.add_argument("--frames", type=Path, default=None, help="dump rendered frames as PNG here")
    rep.add_argument("--fps", type=int, choices=[10, 20], default=20)
    rep.add_argument("--no-video", action="store_true")
    rep.add_argument("--rig", default=None, help="CARLA runs: sensor rig of the cameras (default: the agent config's)")

    # subcommands other packages register (training: collect, probe), see carla_eval.commands
    from carla_eval.commands import load_commands

    for command in load_commands(reserved=BUILTIN_COMMANDS):
        contributed = sub.add_parser(command.name, help=command.help)
        command.add_arguments(contributed)
        contributed.set_defaults(contributed_command=command)
    return parser


def _run(args: argparse.Namespace, console: Console, argv: list[str]) -> int:
    from carla_eval.report import print_metrics
    from carla_eval.runner import RunError, run

    try:
        from carla_eval.placement import parse_gpus

        gpus = parse_gpus(args.gpus) if args.gpus else ()
        workers = args.workers if args.workers is not None else (len(gpus) * args.workers_per_gpu if gpus else 1)
        retry_statuses = None
        if args.retry_status is not None:
            retry_statuses = tuple(s for s in args.retry_status if s.lower() != "none")
        config = RunConfig(
            backend=BackendSpec(args.backend, dict(args.backend_option)),
            routes_file=args.routes,
            agent=AgentSpec(path=args.agent, config=args.agent_config),
            out_dir=args.out,
            workers=workers,
            ray_address=args.ray_address,
            routes_subset=args.routes_subset,
            repetitions=args.repetitions,
            resume=args.resume,
            seed=args.seed,
            video=VideoConfig(mode=args.video, last_seconds=args.video_seconds, fps=args.video_fps),
            retries=args.retries,
            penalty_formula=args.penalty_formula,
            route_timeout_s=args.route_timeout,
            watchdog=WatchdogConfig(realtime_factor=args.realtime_factor, agent_timeout_s=args.agent_timeout),
            save_traces=not args.no_traces,
            show_progress=not args.no_progress,
            allow_code_change=args.allow_code_change,
            ray_connect_timeout_s=args.ray_connect_timeout,
            gpus=gpus,
            workers_per_gpu=args.workers_per_gpu,
            retry_statuses=retry_statuses,
            record=args.record,
            weather_table=args.weather_table,
        )
        summary = run(config, console, argv)
    except (RunError, ValueError) as exc:
        from rich.markup import escape

        console.print(f"[bold red]carla-eval run: {escape(str(exc))}[/]", soft_wrap=True, highlight=False)
        return EXIT_USAGE
    if summary.metrics is not None:
        print_metrics(summary.metrics, console, title=f"carla-eval: {summary.run_dir}")
    console.print(f"results: {summary.results_path}")
    console.print(f"metrics: {summary.metrics_path}")
    if summary.videos:
        console.print(f"videos:  {summary.run_dir / 'videos'} ({len(summary.videos)} this session)")
    if summary.interrupted:
        console.print(f"[yellow]interrupted: {summary.recorded}/{summary.total} recorded; continue with --resume[/]")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _metrics(args: argparse.Namespace, console: Console) -> int:
    from carla_eval.atomic_io import atomic_write_json
    from carla_eval.merge import MetricsInputError, merge_runs
    from carla_eval.metrics import ComfortConfig, compute_metrics
    from carla_eval.report import print_metrics
    from carla_eval.results import ResultsFileError

    try:
        merged = merge_runs(args.runs, args.routes, args.routes_subset, args.repetitions, args.metric_info)
        metrics = compute_metrics(merged.records, merged.expected, merged.metric_info_of, args.penalty_formula,
                                  ComfortConfig(bench2drive_compat=not args.comfort_strict), n_total=merged.n_total)
    except (MetricsInputError, ResultsFileError, ValueError) as exc:
        console.print(f"[bold red]carla-eval metrics: {exc}[/]")
        return EXIT_USAGE
    metrics.notes.extend(merged.notes)
    print_metrics(metrics, console, title="carla-eval metrics: " + ", ".join(str(p) for p in args.runs))
    if args.json is not None:
        atomic_write_json(args.json, metrics.to_json())
        console.print(f"metrics: {args.json}")
    return EXIT_OK


def _export(args: argparse.Namespace, console: Console) -> int:
    from carla_eval.export import export_bench2drive
    from carla_eval.merge import MetricsInputError
    from carla_eval.results import ResultsFileError

    try:
        summary = export_bench2drive(args.runs, args.out)
    except (MetricsInputError, ResultsFileError) as exc:
        console.print(f"[bold red]carla-eval export: {exc}[/]")
        return EXIT_USAGE
    console.print(f"export: {summary.out_dir} ({len(summary.checkpoints)} checkpoint file(s), "
                  f"{summary.metric_info} metric_info file(s))")
    if summary.without_metric_info:
        console.print(f"[yellow]{len(summary.without_metric_info)} route(s) have no metric_info; Bench2Drive's "
                      f"efficiency_smoothness_benchmark.py stops on them: {', '.join(summary.without_metric_info[:10])}[/]")
    return EXIT_OK


def _replay(args: argparse.Namespace, console: Console) -> int:
    from carla_eval.manifest import ManifestError
    from carla_eval.replay import REPLAY_TOLERANCE_M, ReplayError, find_record, replay_route
    from carla_eval.results import ResultsFileError

    try:
        from carla_eval.manifest import RunManifest

        manifest = RunManifest.load(args.run_dir)
        if manifest.identity.get("backend") == "carla":
            return _replay_carla(args, console, manifest)
        out = args.out
        if out is None and not args.no_video:
            rec = find_record(args.run_dir, args.route, args.repetition)
            out = args.run_dir / "replays" / f"{rec['save_name']}.mp4"
        result = replay_route(args.run_dir, args.route, args.repetition, None if args.no_video else out, args.frames, args.fps)
    except (ReplayError, ManifestError, ResultsFileError, FileNotFoundError, ValueError) as exc:
        console.print(f"[bold red]carla-eval replay: {exc}[/]")
        return EXIT_USAGE
    console.print(f"{result.record_id}: {result.ticks_replayed} ticks replayed of {result.ticks_recorded} recorded; "
                  f"max ego deviation {result.max_deviation_m:.3e} m (tolerance {REPLAY_TOLERANCE_M:g} m)")
    if result.video:
        console.print(f"video: {result.video}")
    if result.frames_dir:
        console.print(f"frames: {result.frames_dir} ({result.frames_written} PNG files)")
    if not result.reproduced:
        console.print("[bold red]the replay did NOT reproduce the recorded trajectory[/]")
        return EXIT_REPLAY_MISMATCH
    return EXIT_OK


def _replay_carla(args: argparse.Namespace, console: Console, manifest: Any) -> int:
    from carla_eval.carla_replay import CarlaReplayError, replay_carla_record
    from carla_eval.replay import ReplayError, find_record

    try:
        rec = find_record(args.run_dir, args.route, args.repetition)
        out = None if args.no_video else (args.out or args.run_dir / "replays" / f"{rec['save_name']}.mp4")
        result = replay_carla_record(args.run_dir, rec, manifest.identity.get("backend_options", {}),
                                     manifest.identity.get("agent_config") or None, out, args.frames, args.fps, args.rig)
    except (CarlaReplayError, ReplayError, ValueError, OSError) as exc:
        console.print(f"[bold red]carla-eval replay: {exc}[/]")
        return EXIT_USAGE
    console.print(f"{result.record_id}: {result.ticks} ticks replayed from {result.recording} in CARLA")
    if result.video:
        console.print(f"video: {result.video}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    contributed = getattr(args, "contributed_command", None)
    if unknown and (contributed is None or contributed.load_error is None):
        parser.parse_args(argv)  # argparse's own message and exit code 2
    if contributed is not None and contributed.load_error is not None:
        return contributed.run(args)
    console = Console()
    try:
        return _dispatch(args, console, argv)
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        console.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    except OSError as exc:  # an output that cannot be written (run has its own message for its folder)
        from rich.markup import escape

        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[bold red]carla-eval {args.command}: {escape(where + (exc.strerror or str(exc)))}[/]",
                      soft_wrap=True, highlight=False)
        return EXIT_USAGE


def _dispatch(args: argparse.Namespace, console: Console, argv: list[str]) -> int:
    if args.command == "run":
        return _run(args, console, argv)
    if args.command == "metrics":
        return _metrics(args, console)
    if args.command == "replay":
        return _replay(args, console)
    if args.command == "export":
        return _export(args, console)
    if args.command == "compare":
        from carla_eval.compare import run_cli

        return run_cli(args)
    return args.contributed_command.run(args)


if __name__ == "__main__":
    sys.exit(main())
