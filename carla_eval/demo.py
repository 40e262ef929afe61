"""``python -m carla_eval.demo`` (``make demo``): the shipped tiny agent on the sandbox smoke suite.

Runs ``carla-eval run --backend sandbox --routes routes/sandbox/smoke.xml --agent agent/ik_agent.py
--agent-config weights/ik-tiny/agent.yaml --workers 2 --out runs/demo-<timestamp>`` from the
repository root (the shipped weights use the ``carla-3cam`` rig; a sandbox-only rig such as
``sandbox-bev`` would add ``--backend-option max_mount_distance=null``), then prints the metrics table
and where results, metrics and videos are.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from carla_eval.cli import main as cli_main

REPO = Path(__file__).resolve().parent.parent
REQUIRED = {
    "agent": REPO / "agent" / "ik_agent.py",
    "agent config (shipped tiny weights; build them with `make weights`)": REPO / "weights" / "ik-tiny" / "agent.yaml",
    "route file": REPO / "routes" / "sandbox" / "smoke.xml",
    "sandbox backend": REPO / "carla_eval" / "sandbox" / "__init__.py",
}


def sandbox_rig_options(agent_config: Path) -> list[str]:
    """Backend options an agent config's rig needs: a sandbox-only rig (``sandbox-bev``, its camera
    20 m up) needs the 3 m mount-radius rule turned off; SENSORS-track rigs need nothing."""
    from agent.agent_config import load_agent_config
    from agent.rigs import get_rig

    if get_rig(load_agent_config(agent_config).rig).sandbox_only:
        return ["--backend-option", "max_mount_distance=null"]
    return []


def main(argv: list[str] | None = None) -> int:
    missing = [f"  - {what}: {path}" for what, path in REQUIRED.items() if not path.exists()]
    if missing:
        print("carla-eval demo cannot run; missing:\n" + "\n".join(missing), file=sys.stderr)
        return 2
    out = REPO / "runs" / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    config = REPO / "weights" / "ik-tiny" / "agent.yaml"
    args = [
        "run", "--backend", "sandbox",
        "--routes", str(REQUIRED["route file"]),
        "--agent", str(REQUIRED["agent"]),
        "--agent-config", str(config),
        "--workers", "2",
        "--out", str(out),
        *sandbox_rig_options(config),
        *(argv or []),
    ]
    code = cli_main(args)
    videos = sorted((out / "videos").glob("*.mp4")) if (out / "videos").is_dir() else []
    print(f"run folder: {out}")
    print(f"results:    {out / 'results.json'}")
    print(f"metrics:    {out / 'metrics.json'}")
    print(f"videos:     {len(videos)} in {out / 'videos'}" if videos else "videos:     none (no failed or penalised route)")
    for v in videos:
        print(f"  {v}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
