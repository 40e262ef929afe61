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

Each model of ``baselines`` (the shortcut baseline: ``weights/shortcut-tiny``) is fine-tuned in
every iteration on the same aggregate with the same steps, from its own previous fine-tune; it
never drives the collection. With ``evaluation`` set, the initial models and every iteration's
models drive the same closed-loop routes and seeds (``carla_eval.runner``; resumable), and their
driving scores go into ``dagger.json`` (``python -m training.dagger_plot`` draws them).

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
class LoopEvaluation:
    """Closed-loop evaluation of the loop's models: ``routes`` (cut to ``routes_subset``, the
    ``carla-eval run --routes-subset`` syntax) on the sandbox, once per seed of ``seeds``."""

    routes: str = "routes/sandbox/bench.xml"
    routes_subset: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    workers: int = 1

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("evaluation.seeds: give at least one seed")
        if self.workers < 1:
            raise ValueError(f"evaluation.workers: must be >= 1, got {self.workers}")


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
    # model folders fine-tuned on the same aggregate with the same steps each iteration (never driving)
    baselines: list[str] = field(default_factory=list)
    evaluation: LoopEvaluation | None = None  # None: no closed-loop runs inside the loop

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
        names = [Path(m).name for m in [self.initial_model, *self.baselines]]
        if len(set(names)) != len(names) or "expert" in names:
            raise ValueError(f"initial_model and baselines: their folder names must differ and not be 'expert' (they name the models), got {names}")

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


def evaluate_model(cfg: DaggerConfig, agent_yaml: Path | None, out: Path) -> dict[str, Any]:
    """Closed-loop runs of one model (``cfg.evaluation``; ``agent_yaml`` None: the privileged
    expert), one run folder per seed under ``out``; a folder that exists is resumed, so a finished
    run is only re-scored. Returns DS per seed, mean and sd, the run folders and per seed the route
    completion, the successes, ``[successes, routes]`` per ability, the route statuses and each route's DS
    (``carla_eval.compare.summarize``)."""
    import io

    from rich.console import Console

    from carla_eval.compare import evaluate_folder, summarize
    from carla_eval.run_config import AgentSpec, BackendSpec, RunConfig, VideoConfig
    from carla_eval.runner import run as run_routes

    ev = cfg.evaluation
    assert ev is not None
    runs: dict[str, str] = {}
    details: dict[str, dict[str, Any]] = {}
    for seed in ev.seeds:
        run_dir = out / f"seed_{seed}"
        rc = RunConfig(backend=BackendSpec("sandbox"), routes_file=Path(ev.routes),
                       agent=AgentSpec("expert") if agent_yaml is None else AgentSpec(cfg.agent_file, str(agent_yaml)),
                       out_dir=run_dir,
                       workers=ev.workers, routes_subset=ev.routes_subset, seed=seed, resume=run_dir.exists(),
                       video=VideoConfig(mode="none"), show_progress=False)
        summary = run_routes(rc, Console(file=io.StringIO()))
        if summary.interrupted or summary.metrics is None or not summary.metrics.complete:
            raise RuntimeError(f"closed-loop run {run_dir} did not finish ({summary.recorded}/{summary.total} "
                               "routes recorded); run the loop again to resume it")
        runs[str(seed)] = str(run_dir)
        details[str(seed)] = evaluate_folder(run_dir)[1]
    return summarize(details, runs)


def _evaluate_all(cfg: DaggerConfig, models: dict[str, Path | None], initial: dict[str, Path], out: Path,
                  done: dict[str, Any]) -> dict[str, Any]:
    """``evaluate_model`` for each named model (None: the expert; agent settings from the initial
    model of that name, ``initial``) unless ``done`` holds its result for the same model folder."""
    results = {}
    for name, model in models.items():
        key = "expert" if model is None else str(model)
        if done.get(name, {}).get("model") == key:
            results[name] = done[name]
            continue
        yml = None if model is None else student_agent_yaml(model, initial[name] / "agent.yaml", out / name / "agent.yaml")
        results[name] = {"model": key, **evaluate_model(cfg, yml, out / name)}
    return results


def same_loop(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two ``DaggerConfig`` dicts describe the same loop: equal but for ``iterations``,
    so a finished loop can be continued for more iterations (or stopped after fewer)."""
    return {k: v for k, v in a.items() if k != "iterations"} == {k: v for k, v in b.items() if k != "iterations"}


def run(cfg: DaggerConfig, resume: bool = False) -> dict[str, Any]:
    """Every iteration of the module doc; returns the loop's state (``work_dir/dagger.json``)."""
    from training.make_weights import finished_stage
    from training.train import run as train_run

    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    initial = Path(cfg.initial_model)
    for field_name, model in [("initial_model", initial), *(("baselines", Path(b)) for b in cfg.baselines)]:
        for need in (model / "agent.yaml", model / "training" / "config.yaml"):
            if not need.is_file():
                raise FileNotFoundError(f"{field_name}: {need} is missing (a model folder installed by make weights)")
    missing = [d for d in [*cfg.expert_data, cfg.val_data] if not (Path(d) / "manifest.json").is_file()]
    if missing:
        raise FileNotFoundError(f"expert_data / val_data: no collected dataset (manifest.json) in {missing}")
    template = load_config(initial / "training" / "config.yaml")
    names = {Path(m).name: Path(m) for m in [initial, *cfg.baselines]}  # the initial models, by name
    baseline_templates = {name: load_config(names[name] / "training" / "config.yaml") for name in list(names)[1:]}
    state_path = work / STATE_NAME
    state: dict[str, Any] = {"config": to_dict(cfg), "initial_model": str(initial), "iterations": []}
    if state_path.is_file():
        previous = json.loads(state_path.read_text())
        if not same_loop(previous.get("config", {}), state["config"]):
            raise ValueError(f"{state_path} was written by another DAgger config; use a new work_dir "
                             "(or the same config) to continue")
        state["iterations"] = previous.get("iterations", [])
        if "initial_eval" in previous:
            state["initial_eval"] = previous["initial_eval"]
    if cfg.evaluation is not None:
        state["initial_eval"] = _evaluate_all(cfg, {"expert": None, **names}, names, work / "initial_eval",
                                              state.get("initial_eval", {}))
        _save(state, state_path, None)

    student = initial
    current = dict(names)  # each model's latest fine-tune
    datasets = list(cfg.expert_data)
    for i in range(cfg.iterations):
        it_dir = work / f"iter_{i}"
        previous_entry = next((e for e in state["iterations"] if e["index"] == i), {})
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
        student = Path(result.final_model)
        current[initial.name] = student
        entry["baselines"] = {}
        for name, b_template in baseline_templates.items():
            b_stage = finetune_config(cfg, b_template, current[name], datasets, it_dir / f"finetune_{name}")
            b_result = finished_stage(b_stage) or train_run(b_stage, resume="auto" if resume else None)
            entry["baselines"][name] = {"from": str(current[name]), "model": str(b_result.final_model),
                                        "train_s": round(float(b_result.wall_s), 1), "last_val": b_result.last_val}
            current[name] = Path(b_result.final_model)
            _save(state, state_path, entry)
        if cfg.evaluation is not None:
            entry["eval"] = _evaluate_all(cfg, current, names, it_dir / "eval", previous_entry.get("eval", {}))
            _save(state, state_path, entry)
        logger.info("iteration %d: beta %.3f, %d frames (%d driven by the student), model %s", i, entry["beta"],
                    entry["collection"]["frames"], entry["collection"]["student_frames"], entry["model"])
    return state


def _save(state: dict[str, Any], path: Path, entry: dict[str, Any] | None) -> None:
    if entry is not None:
        iterations = [e for e in state["iterations"] if e.get("index") != entry["index"]]
        state["iterations"] = sorted([*iterations, dict(entry)], key=lambda e: e["index"])
    from training.manifest import write_json_atomic

    write_json_atomic(path, state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dagger", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="DaggerConfig YAML")
    parser.add_argument("--resume", action="store_true", help="continue an unfinished fine-tune from its checkpoint")
    parser.add_argument("--iterations", type=int, default=None,
                        help="run the loop up to this many iterations (default: the config's); a later call "
                             "with more continues the same loop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_dagger_config(args.config)
        if args.iterations is not None:
            cfg = dataclasses.replace(cfg, iterations=args.iterations)
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
