"""``python -m training.make_weights`` (``make weights``): build the shipped tiny checkpoints end to end.

Steps (each logged with its wall time; all outputs under ``work_dir``):

1. collect expert data in the sandbox with the agent's rig (``rig``, default ``carla-3cam``):
   the hand-written training routes and the held-out validation routes with depth and semantic
   ground truth, and generated training suites of the bench kinds (``generated_train_suites``:
   indices k of ``carla_eval.sandbox.make_routes.training_seed(k)``, a seed range no evaluation
   suite uses); perturbations on the training runs only (``training.collection``);
2. stage (a): pre-train the tiny vision encoder (image reconstruction plus, with ground truth, depth
   and semantic targets), then freeze it;
3. with ``ik_alone.steps`` > 0: train the IK net alone on the frozen encoder's tokens of the real
   future frames (``training.ik_study``, cheap steps with no VLA in the loop), then stage (b) starts
   from it; stage (b): train the IK model (future-state loss + IK net) on the cached tokens;
4. stage (b): train the shortcut baseline on the same data and the same frozen encoder;
   with ``finetune.steps`` > 0 both models then train that many more steps from their stage-(b)
   result (``model.init_from``, the same steps and lr for both), the IK model with
   ``finetune_overrides`` (the loss settings of ``training.train.INIT_FROM_OVERRIDES``, e.g.
   ``ik_future_gradient``); the shortcut takes those of them that reach it;
5. copy both models into ``weights_dir``/ik-tiny and ``weights_dir``/shortcut-tiny with their
   ``agent.yaml``, training logs and a model card (README.md) holding the data, the command lines,
   the training times and the validation metrics.

Sizes (routes, repetitions, steps, batch) come from a :class:`MakeWeightsConfig` YAML
(default ``training/configs/make_weights.yaml``); ``--quick`` shrinks everything for a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.config import (DataConfig, EvalConfig, LogConfig, ModelConfig, OptimConfig, PretrainConfig, TrainConfig,
                             from_dict)

logger = logging.getLogger("training.make_weights")

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "make_weights.yaml"


@dataclass
class StageSteps:
    """Optimizer steps and learning rate of one training stage."""

    steps: int
    lr: float = 3e-4
    warmup_steps: int = 50


@dataclass
class MakeWeightsConfig:
    """Everything ``make weights`` does, sized for a CPU machine (see the YAML for the shipped values)."""

    work_dir: str = "runs/make_weights"
    weights_dir: str = "weights"
    rig: str = "carla-3cam"
    train_routes: list[str] = field(default_factory=lambda: ["training/routes/train.xml"])
    val_routes: list[str] = field(default_factory=lambda: ["training/routes/val.xml"])
    generated_train_suites: list[int] = field(default_factory=list)
    train_repetitions: int = 2
    generated_repetitions: int = 1
    val_repetitions: int = 1
    ground_truth: bool = True
    seed: int = 0
    backend: str = "sandbox"
    workers: int = 2
    noise: str = "default"
    frame_stride: int = 2
    max_ticks: int | None = None
    image_format: str = "png"
    pretrain: StageSteps = field(default_factory=lambda: StageSteps(steps=600, lr=1e-3))
    pretrain_targets: PretrainConfig = field(default_factory=PretrainConfig)
    pretrain_max_frames: int | None = None
    ik_alone: StageSteps = field(default_factory=lambda: StageSteps(steps=0))
    ik_alone_batch_size: int = 64
    ik: StageSteps = field(default_factory=lambda: StageSteps(steps=2000))
    ik_turn_repeat: int = 1  # the IK stage draws turning frames this many times per epoch (DataConfig.turn_repeat)
    shortcut: StageSteps = field(default_factory=lambda: StageSteps(steps=2000))
    finetune: StageSteps = field(default_factory=lambda: StageSteps(steps=0, lr=1e-4))
    finetune_overrides: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    token_cache: bool = True
    eval_every: int = 500
    max_val_frames: int = 256
    num_threads: int = 2
    model_overrides: dict[str, Any] = field(default_factory=dict)
    ik_num_samples: int = 8  # diffusion draws averaged per plan in the IK agent.yaml (docs/training.md)
    skip_collect: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ik_num_samples, bool) or not isinstance(self.ik_num_samples, int) or self.ik_num_samples < 1:
            raise ValueError(f"ik_num_samples: must be an integer >= 1, got {self.ik_num_samples!r}")
        from training.train import INIT_FROM_OVERRIDES

        unknown = sorted(set(self.finetune_overrides) - set(INIT_FROM_OVERRIDES))
        if unknown:
            raise ValueError(f"finetune_overrides: {unknown} cannot change a trained model "
                             f"(the fine-tune takes only {list(INIT_FROM_OVERRIDES)})")


def quick(cfg: MakeWeightsConfig) -> MakeWeightsConfig:
    """A smoke-sized copy of ``cfg`` (minutes, for checking the pipeline end to end)."""
    return dataclasses.replace(
        cfg, train_repetitions=1, val_repetitions=1, max_ticks=200, generated_train_suites=[], pretrain_max_frames=None,
        pretrain=StageSteps(steps=20, lr=1e-3, warmup_steps=5), ik=StageSteps(steps=20, warmup_steps=5),
        ik_alone=StageSteps(steps=min(cfg.ik_alone.steps, 5)), ik_alone_batch_size=8,
        shortcut=StageSteps(steps=20, warmup_steps=5), eval_every=20, max_val_frames=32,
        finetune=StageSteps(steps=min(cfg.finetune.steps, 5), lr=cfg.finetune.lr, warmup_steps=1),
    )


def load_make_weights_config(path: str | Path) -> MakeWeightsConfig:
    data = yaml.safe_load(Path(path).read_text()) if Path(path).is_file() else None
    if data is None and not Path(path).is_file():
        raise FileNotFoundError(f"make_weights config not found: {path}")
    return from_dict(MakeWeightsConfig, data, where=str(path))


COLLECT_AGENT_YAML = """\
# Sensor decoding of the collected episodes: the agent's rig and settings (written by make_weights).
model: .
rig: {rig}
lat_ref: 0.0
lon_ref: 0.0
acceleration_source: imu
"""


def collect_stage(cfg: MakeWeightsConfig, routes: list[str], repetitions: int, out: Path, seed: int, noise: str,
                  ground_truth: bool) -> dict[str, Any]:
    """Run one collection (skipping episodes that already exist); returns the manifest."""
    from agent.rigs import get_rig
    from training.collection import CollectConfig, NoiseConfig, run_collection
    from training.recording import RecorderConfig

    rig = get_rig(cfg.rig)
    agent_yaml = Path(cfg.work_dir) / "collect_agent.yaml"
    agent_yaml.parent.mkdir(parents=True, exist_ok=True)
    agent_yaml.write_text(COLLECT_AGENT_YAML.format(rig=rig.name))
    recorder = RecorderConfig(cameras=rig.camera_ids, frame_stride=cfg.frame_stride, image_format=cfg.image_format,
                              ground_truth=ground_truth)
    ccfg = CollectConfig(
        routes=tuple(routes), out=str(out), backend=cfg.backend, repetitions=repetitions, seed=seed, workers=cfg.workers,
        noise=NoiseConfig.parse(noise), recorder=recorder, agent_config=str(agent_yaml), max_ticks=cfg.max_ticks,
    )
    return run_collection(ccfg)


def generated_routes(cfg: MakeWeightsConfig) -> list[str]:
    """Write the generated training suites (bench kinds, training seed range) into ``work_dir/routes``."""
    from carla_eval.routes import write_routes_file
    from carla_eval.sandbox.make_routes import bench_routes, training_seed

    files = []
    for k in cfg.generated_train_suites:
        path = Path(cfg.work_dir) / "routes" / f"train_gen_{k}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_routes_file(bench_routes(training_seed(k)), path)
        files.append(str(path))
    return files


# Model overrides that do not reach every stage, so that changing one retrains only the stages it
# reaches (--resume): none of these shapes the encoder, so pre-training is built without them, and
# the shortcut baseline has no future-state loss.
NOT_IN_STAGE = {
    "pretrain": ("future_turn_weight", "ik_future_gradient", "status_queries"),
    "shortcut": ("future_turn_weight", "ik_future_gradient"),
    "ik": (),
    "ik_alone": ("future_turn_weight", "ik_future_gradient", "status_queries"),  # the IK net alone has no VLA
}


def stage_config(cfg: MakeWeightsConfig, stage: str, kind: str, steps: StageSteps, data: Path, out: Path,
                 encoder: Path | None, ik_net_from: Path | None = None, init_from: Path | None = None) -> TrainConfig:
    """One training stage's config. ``init_from``: the fine-tune of a trained model, which takes
    ``finetune_overrides`` (those that reach ``kind``) in place of ``model_overrides``."""
    pretrain = stage == "pretrain_encoder"
    given = cfg.finetune_overrides if init_from is not None else cfg.model_overrides
    overrides = {k: v for k, v in given.items() if k not in NOT_IN_STAGE["pretrain" if pretrain else kind]}
    extra = [str(data / "train_gen")] if cfg.generated_train_suites and not pretrain else []
    return TrainConfig(
        stage=stage,  # type: ignore[arg-type]
        data=DataConfig(train_dir=str(data / "train"), extra_train_dirs=extra, val_dir=str(data / "val"),
                        max_val_frames=cfg.max_val_frames, token_cache=cfg.token_cache and not pretrain,
                        max_train_frames=cfg.pretrain_max_frames if pretrain else None,
                        turn_repeat=cfg.ik_turn_repeat if kind == "ik" and not pretrain else 1),
        model=ModelConfig(kind=kind, overrides=overrides,  # type: ignore[arg-type]
                          encoder_from=str(encoder) if encoder else None, freeze_encoder=True,
                          ik_net_from=str(ik_net_from) if ik_net_from else None,
                          init_from=str(init_from) if init_from else None),
        optim=OptimConfig(lr=steps.lr, warmup_steps=steps.warmup_steps, max_steps=steps.steps, batch_size=cfg.batch_size),
        pretrain=cfg.pretrain_targets if cfg.ground_truth else PretrainConfig(),
        log=LogConfig(output_dir=str(out), log_every=25, eval_every=cfg.eval_every, save_every=cfg.eval_every, keep_last=1),
        eval=EvalConfig(),
        seed=cfg.seed,
        num_threads=cfg.num_threads,
    )


AGENT_YAML = """\
# IKAgent configuration of this checkpoint (the model folder is this file's folder).
# Run it: carla-eval run --backend sandbox --routes routes/sandbox/bench.xml --agent agent/ik_agent.py \\
#   --agent-config {rel}/agent.yaml
model: .
device: cpu
num_threads: 1
rig: {rig}
planning_hz: 10.0
num_inference_steps: null
num_samples: {num_samples}
seed: 0
lat_ref: 0.0
lon_ref: 0.0
acceleration_source: {acceleration_source}
route:
  reach_radius_m: {reach}
  min_spacing_m: {spacing}
"""


def _dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def install_weights(final_model: Path, run_dir: Path, dest: Path, card: str, agent_yaml: str,
                    stage_b_dir: Path | None = None) -> None:
    """Copy a trained model folder + logs + agent.yaml + README.md to ``dest`` (replaced atomically).
    ``stage_b_dir``: the stage-(b) run a fine-tuned model started from; its logs go to
    ``training/stage_b``."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(final_model, tmp)
    for source, logs in ((run_dir, tmp / "training"), (stage_b_dir, tmp / "training" / "stage_b")):
        if source is None:
            continue
        logs.mkdir(parents=True)
        for name in ("train_log.csv", "val_log.csv", "config.yaml", "result.json"):
            if (source / name).is_file():
                shutil.copy(source / name, logs / name)
    (tmp / "agent.yaml").write_text(agent_yaml)
    (tmp / "README.md").write_text(card)
    for p in [tmp, *tmp.rglob("*")]:  # save_pretrained's temporary folders are private (0700)
        p.chmod(0o755 if p.is_dir() else 0o644)
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


def model_card(name: str, kind: str, cfg: MakeWeightsConfig, manifests: dict[str, dict[str, Any]],
               timings: dict[str, float], results: dict[str, Any], params: dict[str, int], command: str) -> str:
    """The README.md of a shipped checkpoint (markdown)."""
    from agent.rigs import get_rig

    tr, va = manifests["train"]["totals"], manifests["val"]["totals"]
    cams = get_rig(cfg.rig).cameras
    rig_text = f"{len(cams)} camera{'s' if len(cams) > 1 else ''} " + ", ".join(
        f"{c.id} {c.width} x {c.height} yaw {c.yaw:g}" for c in cams)
    horizons = ", ".join(f"{h:g}" for h in cfg.model_overrides.get("future_horizons_s", [3.0]))
    gen = manifests.get("train_gen", {}).get("totals")
    gen_text = "" if gen is None else (
        f"\n- generated training suites (bench kinds, training seed range, suites {cfg.generated_train_suites}): "
        f"{gen['episodes']} episodes, {gen['frames']} frames")
    val = results.get("last_val", {})
    alone_text = "" if kind != "ik" or cfg.ik_alone.steps <= 0 else (
        f"1b. the IK net alone on the frozen encoder's tokens of the real future frames "
        f"(`training.ik_study`): {cfg.ik_alone.steps} steps, batch {cfg.ik_alone_batch_size}, lr {cfg.ik_alone.lr}; "
        "the IK model's IK net and trajectory normaliser start from it\n")
    motion = cfg.pretrain_targets.motion_weight > 0 and cfg.ground_truth
    reaching = {k: v for k, v in cfg.finetune_overrides.items() if k not in NOT_IN_STAGE[kind]}
    finetune_text = "" if cfg.finetune.steps <= 0 else (
        f"3. fine-tune from step 2's model: {cfg.finetune.steps} more steps, lr {cfg.finetune.lr}, cosine schedule"
        + (f", model overrides {reaching}" if reaching else "") + "\n")
    stage_b_text = "" if cfg.finetune.steps <= 0 else " (the fine-tune; `training/stage_b/`: the stage-(b) run it started from)"
    metric_rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(val.items()))
    what = ("IK-grounded VLA (vision encoder -> Qwen2-style VLA predicting the future visual tokens -> "
            "IK net decoding the trajectory from current + predicted future tokens)" if kind == "ik" else
            "shortcut baseline VLA (same encoder and LLM; trajectory regressed from the LLM hidden state, "
            "no future-state loss)")
    return f"""# {name}

A tiny {what}, trained from scratch on CPU on data from the embedded highway-env sandbox. It is a
test-scale checkpoint for the sandbox (`{cfg.rig}` rig, {rig_text}),
not a reproduction of the paper's results (Shim & Park, "Grounding Driving VLA via Inverse
Kinematics", arXiv 2605.21061).

## Files
- `config.json`, `model.safetensors`, tokenizer files: `agent.model.load_pipeline("{cfg.weights_dir}/{name}")`
- `agent.yaml`: the IKAgent config (model folder = this folder)
- `training/`: train / validation logs (CSV), the stage config and its result{stage_b_text}

Parameters: {params.get('total', 0):,} ({', '.join(f'{k} {v:,}' for k, v in params.items() if k not in ('total', 'trainable'))}).

## Data
Privileged sandbox expert with control perturbations (recovery data), recorded at 10 Hz; labels are
the ego's actual future positions (6 waypoints, 0.5 s apart, ego frame); the future visual state is
the camera frames {horizons} s later.
- training: {tr['episodes']} episodes, {tr['frames']} frames ({tr['perturbed_frames']} with a perturbed control),
  routes {', '.join(cfg.train_routes)} x {cfg.train_repetitions} repetitions, noise `{cfg.noise}`{gen_text}
- validation (held-out routes, no perturbation): {va['episodes']} episodes, {va['frames']} frames,
  routes {', '.join(cfg.val_routes)}
- git revision at collection: {manifests['train'].get('git_revision')}

## Training
1. encoder pre-training (image reconstruction{', depth and semantic targets' if cfg.ground_truth else ''}{', ego motion between frames' if motion else ''} from patch tokens): {cfg.pretrain.steps} steps, lr {cfg.pretrain.lr}
{alone_text}2. {'IK model' if kind == 'ik' else 'shortcut baseline'}: {(cfg.ik if kind == 'ik' else cfg.shortcut).steps} steps,
   batch {cfg.batch_size}, AdamW lr {(cfg.ik if kind == 'ik' else cfg.shortcut).lr}, cosine schedule, encoder frozen
{finetune_text}
Wall time on this machine ({platform.processor() or platform.machine()}, {cfg.num_threads} torch threads):
{chr(10).join(f'- {k}: {v / 60:.1f} min' for k, v in timings.items())}{'' if 'data collection' in timings else chr(10) + '- data collection: not timed here (`--skip-collect` reused the data)'}

## Validation (held-out routes, open loop)
L2 in metres at 1/2/3 s; collision = share of frames whose planned ego box overlaps another
vehicle's ground-truth box at the same future time (`collision_gt_*`: the same for the expert's
actual path, the floor of that measure).

| metric | value |
|---|---:|
{metric_rows}

Closed-loop results on routes/sandbox/bench.xml, the grounding probe and the known limitations of
this setup: docs/training.md ("Results").

## Reproduce
```
{command}
```
(`make weights` runs exactly this; sizes in training/configs/make_weights.yaml.)
"""


def finished_stage(stage: TrainConfig) -> Any:
    """The :class:`training.trainer.TrainResult` of a stage already run to its last step with this
    very config (``result.json``, ``config.yaml`` and the final model in its output folder), else None.
    A finished stage keeps its own wall time and metrics; nothing is trained again."""
    from training.config import load_config, to_dict
    from training.trainer import TrainResult

    out = Path(stage.log.output_dir)
    try:
        result = json.loads((out / "result.json").read_text())
        same = to_dict(load_config(out / "config.yaml")) == to_dict(stage)
    except (OSError, ValueError):
        return None
    if not same or result.get("final_step") != stage.optim.max_steps or not Path(result.get("final_model", "")).is_dir():
        return None
    if result.get("resumed_from") and not result.get("last_val"):
        return None  # a resumed call that trained nothing: it does not carry the stage's numbers
    return TrainResult(**{k: result[k] for k in TrainResult.__dataclass_fields__ if k in result})


def ik_alone_stage(cfg: MakeWeightsConfig, data: Path, out: Path, encoder: Path, resume: bool) -> dict[str, Any]:
    """Train the IK net alone on real-future tokens (``training.ik_study``) into ``out``; returns the
    study's result (its ``train_s`` / ``token_cache_s`` and oracle / static L2 on ``val``). With
    ``resume`` a folder already trained with these very settings is reused."""
    from training.ik_net_io import IK_WEIGHTS
    from training.ik_study import run_study

    reaching = {k: v for k, v in cfg.model_overrides.items() if k not in NOT_IN_STAGE["ik_alone"]}
    overrides = {k: (tuple(v) if k == "image_size" else v) for k, v in reaching.items() if k != "future_horizons_s"}
    horizons = [float(h) for h in cfg.model_overrides.get("future_horizons_s", [3.0])]
    train = [str(data / "train")] + ([str(data / "train_gen")] if cfg.generated_train_suites else [])
    settings = {"encoder": str(encoder), "train": train, "horizons_s": horizons, "steps": cfg.ik_alone.steps,
                "lr": cfg.ik_alone.lr, "warmup_steps": cfg.ik_alone.warmup_steps, "batch_size": cfg.ik_alone_batch_size,
                "overrides": reaching, "seed": cfg.seed, "max_val": cfg.max_val_frames}
    done = out / "result.json"
    if resume and done.is_file() and (out / IK_WEIGHTS).is_file():
        saved = json.loads(done.read_text())
        if saved.get("settings") == json.loads(json.dumps(settings)):
            logger.info("%s: finished with these settings, reused", out)
            return saved
    result = run_study(str(encoder), train, str(data / "val"), horizons, steps=cfg.ik_alone.steps,
                       batch_size=cfg.ik_alone_batch_size, lr=cfg.ik_alone.lr, warmup_steps=cfg.ik_alone.warmup_steps,
                       seed=cfg.seed, max_val=cfg.max_val_frames,
                       preset_overrides=overrides, save_dir=str(out), log=logger.info)
    result["settings"] = settings
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    os.replace(tmp, done)
    return result


def run_stage(stage: TrainConfig, resume: bool) -> Any:
    """Train one stage, or reuse it when it already finished with this config (``--resume``)."""
    from training.train import run as train_run

    if resume:
        done = finished_stage(stage)
        if done is not None:
            logger.info("%s: finished with this config, reused (%.1f min)", stage.log.output_dir, done.wall_s / 60)
            return done
    return train_run(stage, resume="auto" if resume else None)


def collect_data(cfg: MakeWeightsConfig) -> dict[str, dict[str, Any]]:
    """Collect the datasets of the recipe into ``work_dir/data`` (``val``, ``train`` and, with
    generated suites, ``train_gen``), skipping episodes already recorded; returns their manifests."""
    data = Path(cfg.work_dir) / "data"
    gt = cfg.ground_truth
    manifests = {
        "val": collect_stage(cfg, cfg.val_routes, cfg.val_repetitions, data / "val", cfg.seed + 500_000, "none", gt),
        "train": collect_stage(cfg, cfg.train_routes, cfg.train_repetitions, data / "train", cfg.seed, cfg.noise, gt),
    }
    if cfg.generated_train_suites:
        manifests["train_gen"] = collect_stage(cfg, generated_routes(cfg), cfg.generated_repetitions, data / "train_gen",
                                               cfg.seed + 7_000_000, cfg.noise, False)
    return manifests


def run(cfg: MakeWeightsConfig, command: str, resume: bool = False) -> dict[str, Any]:
    """All steps of the module doc; returns a summary (also written to ``work_dir/summary.json``).

    ``resume``: reuse each training stage that already finished with the same config, continue the
    others from their latest checkpoint in ``work_dir`` (collection always skips the episodes
    already recorded). Reported times are each stage's own training time."""

    work = Path(cfg.work_dir)
    data = work / "data"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    splits = ["train", "val"] + (["train_gen"] if cfg.generated_train_suites else [])
    if not cfg.skip_collect:
        collect_data(cfg)
        timings["data collection"] = time.perf_counter() - t  # --skip-collect: reused data, no time of its own
    manifests = {s: json.loads((data / s / "manifest.json").read_text()) for s in splits}

    pre = run_stage(stage_config(cfg, "pretrain_encoder", "ik", cfg.pretrain, data, work / "pretrain", None), resume)
    timings["encoder pre-training"] = pre.wall_s
    encoder = Path(pre.final_model)

    results: dict[str, Any] = {"pretrain": dataclasses.asdict(pre)}
    ik_net_from = None
    if cfg.ik_alone.steps > 0:
        alone = ik_alone_stage(cfg, data, work / "ik-alone", encoder, resume)
        timings["IK net alone"] = alone["train_s"] + alone["token_cache_s"]
        results["ik-alone"] = alone
        ik_net_from = work / "ik-alone"
    runs: dict[str, Path] = {}
    for name, kind, steps in (("ik-tiny", "ik", cfg.ik), ("shortcut-tiny", "shortcut", cfg.shortcut)):
        res = run_stage(stage_config(cfg, "train", kind, steps, data, work / name, encoder,
                                     ik_net_from if kind == "ik" else None), resume)
        timings[f"{name} training"] = res.wall_s
        runs[name] = work / name
        if cfg.finetune.steps > 0:
            results[f"{name} stage b"] = dataclasses.asdict(res)
            runs[name] = work / f"{name}-finetune"
            res = run_stage(stage_config(cfg, "train", kind, cfg.finetune, data, runs[name], None,
                                         init_from=Path(res.final_model)), resume)
            timings[f"{name} fine-tune"] = res.wall_s
        results[name] = dataclasses.asdict(res)
    stage_times = dict(timings)
    for name, kind in (("ik-tiny", "ik"), ("shortcut-tiny", "shortcut")):
        from agent.model import load_model

        params = load_model(results[name]["final_model"]).parameter_counts()
        own = ("data collection", "encoder pre-training", f"{name} training", f"{name} fine-tune") + (
            ("IK net alone",) if kind == "ik" else ())
        shown = {k: v for k, v in stage_times.items() if k in own}
        card = model_card(name, kind, cfg, manifests, shown, results[name], params, command)
        # the shortcut's regression head is deterministic: more draws would all be the same plan
        agent_yaml = AGENT_YAML.format(rel=f"{cfg.weights_dir}/{name}", acceleration_source="imu", reach=4.0, spacing=50.0,
                                       num_samples=cfg.ik_num_samples if kind == "ik" else 1, rig=cfg.rig)
        install_weights(Path(results[name]["final_model"]), runs[name], Path(cfg.weights_dir) / name, card, agent_yaml,
                        stage_b_dir=work / name if cfg.finetune.steps > 0 else None)
        results[name]["size_mb"] = _dir_size_mb(Path(cfg.weights_dir) / name)
    summary = {"timings_s": timings, "results": results, "manifests": {k: v["totals"] for k, v in manifests.items()}}
    (work / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.make_weights", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="MakeWeightsConfig YAML")
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (minutes)")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--skip-collect", action="store_true", help="reuse the data already in work_dir/data")
    parser.add_argument("--resume", action="store_true", help="continue training stages from their latest checkpoints")
    parser.add_argument("--collect-only", action="store_true",
                        help="only collect work_dir/data (the expert data the DAgger loop starts from), then stop")
    args = parser.parse_args(argv)
    if args.collect_only and args.skip_collect:
        parser.error("--collect-only and --skip-collect: choose one")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_make_weights_config(args.config)
    if args.quick:
        cfg = quick(cfg)
    overrides = {k: v for k, v in (("work_dir", args.work_dir), ("weights_dir", args.weights_dir)) if v is not None}
    if args.skip_collect:
        overrides["skip_collect"] = True
    cfg = dataclasses.replace(cfg, **overrides)
    if args.collect_only:
        for split, manifest in collect_data(cfg).items():
            print(f"{split}: {manifest['totals']}")
        return 0
    command = "python -m training.make_weights " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = run(cfg, command.strip(), resume=args.resume)
    for k, v in summary["timings_s"].items():
        print(f"{k}: {v / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
