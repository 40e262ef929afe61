"""``python -m training.dagger``: on-policy data aggregation (DAgger) with the privileged expert.

    python -m training.dagger --config training/configs/dagger.yaml [--resume]

Iteration ``i`` (0, 1, ..., ``iterations - 1``):

1. **collect**: the current student (the shipped model at ``i = 0``, then iteration ``i - 1``'s
   fine-tune) drives ``agent_file`` over fresh generated training routes
   (``carla_eval.sandbox.make_routes.training_seed(k)`` suites, ``training_suites.first +
   i * training_suites.per_iteration`` onwards; a seed range no evaluation suite uses). In each
   window of ``beta_window_s`` the expert drives instead with probability
   ``beta_i = beta * beta_decay ** i``; at every tick the expert labels the state with its plan
   from the true state (``training.collection.OnPolicyConfig``);
2. **aggregate**: the expert data (``expert_data``) plus every iteration's data so far;
3. **fine-tune**: the student's own training config (``<model>/training/config.yaml``, written by
   ``make weights``) on the aggregate, from the student (``model.init_from``), for
   ``finetune.steps`` steps. A frame the student drove (or a perturbation) is labelled with the
   expert's plan from that state; its future frames show the student's path, not the label's, so
   an IK student's fine-tune gives it no future-state loss and no ground-truth teacher forcing
   (``mask_plan_label_future``); the trajectory loss reaches the VLA through the predicted future
   when the model's ``ik_net.future_gradient`` is on (the shipped model's).

``work_dir/dagger.json`` (written atomically after every step) is the dataset manifest of the loop:
per iteration its beta, student, routes, data folder with its collection totals and manifest
checksum, the datasets the fine-tune read, the resulting model and the wall times. The loop is
resumable: collection skips the episodes already recorded and verified, and a finished fine-tune
with the same config is reused (``--resume`` also continues an unfinished one from its checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.config import from_dict, load_config, to_dict
from training.make_weights import StageSteps

logger = logging.getLogger("training.dagger")

STATE_NAME = "dagger.json"


@dataclass
class SuiteRange:
    """Which generated training suites each iteration drives: iteration ``i`` takes the
    ``per_iteration`` suites from index ``first + i * per_iteration`` (62 routes each)."""

    first: int = 1  # make weights draws suite 0
    per_iteration: int = 1


@dataclass
class DaggerConfig:
    """The DAgger loop (see the module doc)."""

    work_dir: str = "runs/dagger"
    initial_model: str = "weights/ik-tiny"  # a model folder with agent.yaml and training/config.yaml
    agent_file: str = "agent/ik_agent.py"
    expert_data: list[str] = field(default_factory=lambda: ["runs/make_weights/data/train",
                                                            "runs/make_weights/data/train_gen"])
    val_data: str = "runs/make_weights/data/val"
    iterations: int = 3
    beta: float = 0.5
    beta_decay: float = 0.5
    beta_window_s: float = 1.0
    training_suites: SuiteRange = field(default_factory=SuiteRange)
    max_routes: int | None = None  # per iteration: this many routes, evenly spread over each suite (None: all)
    repetitions: int = 1
    workers: int = 2
    noise: str = "none"
    max_ticks: int | None = None
    seed: int = 0
    finetune: StageSteps = field(default_factory=lambda: StageSteps(steps=800, lr=1e-4, warmup_steps=50))
    # IK student: frames labelled with the expert's plan (their future was driven by the student or a
    # perturbation) train no future-state loss and no ground-truth teacher forcing (DataConfig)
    mask_plan_label_future: bool = True
    eval_every: int = 1000
    num_threads: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ValueError(f"iterations: must be an integer >= 1, got {self.iterations!r}")
        if not 0.0 <= self.beta <= 1.0 or not 0.0 <= self.beta_decay <= 1.0:
            raise ValueError(f"beta and beta_decay: must lie in [0, 1], got {self.beta}, {self.beta_decay}")
        if self.training_suites.first < 0 or self.training_suites.per_iteration < 1:
            raise ValueError(f"training_suites: first >= 0 and per_iteration >= 1, got {self.training_suites}")
        if self.max_routes is not None and self.max_routes < 1:
            raise ValueError(f"max_routes: must be >= 1 or null, got {self.max_routes}")
        if self.finetune.steps < 1:
            raise ValueError(f"finetune.steps: must be >= 1, got {self.finetune.steps}")

    def beta_at(self, iteration: int) -> float:
        """The probability that the expert drives a window in iteration ``iteration``."""
        return float(self.beta * self.beta_decay ** iteration)

    def suites_at(self, iteration: int) -> list[int]:
        """Training suite indices driven in iteration ``iteration``."""
        start = self.training_suites.first + iteration * self.training_suites.per_iteration
        return list(range(start, start + self.training_suites.per_iteration))


def load_dagger_config(path: str | Path) -> DaggerConfig:
    if not Path(path).is_file():
        raise FileNotFoundError(f"dagger config not found: {path}")
    return from_dict(DaggerConfig, yaml.safe_load(Path(path).read_text()) or {}, where=str(path))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def student_agent_yaml(model: Path, template: Path, out: Path) -> Path:
    """An agent YAML for ``model``: ``template``'s settings (rig, sampling, route planner) with the
    model folder made absolute."""
    settings = yaml.safe_load(template.read_text())
    if not isinstance(settings, dict):
        raise ValueError(f"{template}: not an agent YAML mapping")
    settings["model"] = str(model.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# The DAgger student of this iteration (training.dagger)\n" + yaml.safe_dump(settings, sort_keys=False))
    return out


def iteration_routes(cfg: DaggerConfig, iteration: int) -> list[str]:
    """Write (deterministically) and return the route files of an iteration: its training suites,
    each cut to ``max_routes`` routes evenly spread over the suite (every kind keeps a share)."""
    import numpy as np

    from carla_eval.routes import write_routes_file
    from carla_eval.sandbox.make_routes import training_suites

    files = []
    suites = cfg.suites_at(iteration)
    for stem, routes in training_suites(suites[0], len(suites)):
        if cfg.max_routes is not None and cfg.max_routes < len(routes):
            keep = np.unique(np.linspace(0, len(routes) - 1, cfg.max_routes).round().astype(int))
            routes = [routes[j] for j in keep]
        path = Path(cfg.work_dir) / "routes" / f"{stem}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_routes_file(routes, path)
        files.append(str(path))
    return files


def finetune_config(cfg: DaggerConfig, template: Any, student: Path, datasets: list[str], out: Path) -> Any:
    """The fine-tune of one iteration: ``template`` (the student's training config) on ``datasets``
    from ``student``. Only the settings a trained model can take (``INIT_FROM_OVERRIDES``) are kept."""
    from training.train import INIT_FROM_OVERRIDES

    overrides = {k: v for k, v in template.model.overrides.items() if k in INIT_FROM_OVERRIDES}
    data = dataclasses.replace(template.data, train_dir=datasets[0], extra_train_dirs=list(datasets[1:]),
                               val_dir=cfg.val_data, val_route_ids=[],
                               mask_plan_label_future=cfg.mask_plan_label_future and template.model.kind == "ik")
    model = dataclasses.replace(template.model, overrides=overrides, init_from=str(student), encoder_from=None,
                                ik_net_from=None)
    optim = dataclasses.replace(template.optim, lr=cfg.finetune.lr, warmup_steps=cfg.finetune.warmup_steps,
                                max_steps=cfg.finetune.steps)
    log = dataclasses.replace(template.log, output_dir=str(out), eval_every=cfg.eval_every, save_every=cfg.eval_every)
    return dataclasses.replace(template, stage="train", data=data, model=model, optim=optim, log=log,
                               seed=cfg.seed, num_threads=cfg.num_threads)


def collect_iteration(cfg: DaggerConfig, iteration: int, student_yaml: Path, routes: list[str], out: Path) -> dict[str, Any]:
    """On-policy collection of one iteration (resumes: verified episodes are kept)."""
    from agent.agent_config import load_agent_config
    from agent.rigs import get_rig
    from training.collection import CollectConfig, NoiseConfig, OnPolicyConfig, run_collection
    from training.recording import RecorderConfig

    rig = get_rig(load_agent_config(student_yaml).rig)
    ccfg = CollectConfig(
        routes=tuple(routes), out=str(out), backend="sandbox", repetitions=cfg.repetitions,
        seed=cfg.seed + 9_000_000 + 100_000 * iteration, workers=cfg.workers, noise=NoiseConfig.parse(cfg.noise),
        recorder=RecorderConfig(cameras=rig.camera_ids), agent_config=str(student_yaml), max_ticks=cfg.max_ticks,
        policy=OnPolicyConfig(cfg.agent_file, str(student_yaml), beta=cfg.beta_at(iteration), window_s=cfg.beta_window_s),
    )
    return run_collection(ccfg)


def run(cfg: DaggerConfig, resume: bool = False) -> dict[str, Any]:
    """Every iteration of the module doc; returns the loop's state (``work_dir/dagger.json``)."""
    from training.make_weights import finished_stage
    from training.train import run as train_run

    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    initial = Path(cfg.initial_model)
    for need in (initial / "agent.yaml", initial / "training" / "config.yaml"):
        if not need.is_file():
            raise FileNotFoundError(f"initial_model: {need} is missing (a model folder installed by make weights)")
    missing = [d for d in [*cfg.expert_data, cfg.val_data] if not (Path(d) / "manifest.json").is_file()]
    if missing:
        raise FileNotFoundError(f"expert_data / val_data: no collected dataset (manifest.json) in {missing}")
    template = load_config(initial / "training" / "config.yaml")
    state_path = work / STATE_NAME
    state: dict[str, Any] = {"config": to_dict(cfg), "initial_model": str(initial), "iterations": []}
    if state_path.is_file():
        previous = json.loads(state_path.read_text())
        if previous.get("config") != state["config"]:
            raise ValueError(f"{state_path} was written by another DAgger config; use a new work_dir "
                             "(or the same config) to continue")
        state["iterations"] = previous.get("iterations", [])

    student = initial
    datasets = list(cfg.expert_data)
    for i in range(cfg.iterations):
        it_dir = work / f"iter_{i}"
        entry: dict[str, Any] = {"index": i, "beta": cfg.beta_at(i), "student": str(student),
                                 "suites": cfg.suites_at(i), "data": str(it_dir / "data")}
        student_yaml = student_agent_yaml(student, initial / "agent.yaml", it_dir / "student.yaml")
        routes = iteration_routes(cfg, i)
        entry["routes"] = routes
        t0 = time.perf_counter()
        manifest = collect_iteration(cfg, i, student_yaml, routes, it_dir / "data")
        entry["collect_s"] = round(time.perf_counter() - t0, 1)
        entry["collection"] = manifest["totals"]
        entry["manifest_sha256"] = _sha256(it_dir / "data" / "manifest.json")
        if manifest["totals"]["failed"]:
            logger.warning("iteration %d: %d route runs failed (recorded in %s)", i, manifest["totals"]["failed"],
                           it_dir / "data" / "manifest.json")
        datasets.append(str(it_dir / "data"))
        entry["datasets"] = list(datasets)
        _save(state, state_path, entry)
        stage = finetune_config(cfg, template, student, datasets, it_dir / "finetune")
        result = finished_stage(stage)  # a fine-tune that finished with this very config is reused
        if result is None:
            result = train_run(stage, resume="auto" if resume else None)
        entry["model"] = str(result.final_model)
        entry["train_s"] = round(float(result.wall_s), 1)
        entry["last_val"] = result.last_val
        _save(state, state_path, entry)
        logger.info("iteration %d: beta %.3f, %d frames (%d driven by the student), model %s", i, entry["beta"],
                    entry["collection"]["frames"], entry["collection"]["student_frames"], entry["model"])
        student = Path(result.final_model)
    return state


def _save(state: dict[str, Any], path: Path, entry: dict[str, Any]) -> None:
    iterations = [e for e in state["iterations"] if e.get("index") != entry["index"]]
    state["iterations"] = sorted([*iterations, dict(entry)], key=lambda e: e["index"])
    from training.manifest import write_json_atomic

    write_json_atomic(path, state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dagger", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="DaggerConfig YAML")
    parser.add_argument("--resume", action="store_true", help="continue an unfinished fine-tune from its checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_dagger_config(args.config)
        state = run(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for e in state["iterations"]:
        print(f"iteration {e['index']}: beta {e['beta']:.3f}, {e['collection']['frames']} frames "
              f"({e['collection']['student_frames']} driven by the student), model {e.get('model')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
