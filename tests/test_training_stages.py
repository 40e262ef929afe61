"""Both training stages with the real tiny model on a tiny synthetic dataset (2 steps each)."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from accelerate import Accelerator

from training.config import (ConfigError, DataConfig, EvalConfig, LogConfig, ModelConfig, OptimConfig, TrainConfig,
                             dump_config, load_config)
from training.synthetic import write_synthetic_dataset
from training.train import run

IMAGE = [32, 32]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data"), num_episodes=3, num_ticks=90, image_size=(32, 32))


def _cfg(stage, data_dir, out, **model):
    return TrainConfig(
        stage=stage,
        data=DataConfig(train_dir=str(data_dir), val_route_ids=["2"], max_val_frames=8),
        model=ModelConfig(**{"overrides": {"image_size": IMAGE}, **model}),
        optim=OptimConfig(max_steps=2, batch_size=4, warmup_steps=1),
        log=LogConfig(output_dir=str(out), log_every=1, eval_every=2, save_every=2, tensorboard=False),
        eval=EvalConfig(batch_size=8),
    )


def test_pretrain_then_ik_then_shortcut(data_dir, tmp_path):
    from agent.model.pipeline import load_pipeline

    acc = Accelerator(cpu=True)
    pre = run(_cfg("pretrain_encoder", data_dir, tmp_path / "pre"), accelerator=acc)
    assert (tmp_path / "pre" / "final" / "encoder.safetensors").is_file()
    assert pre.last_val["token_relative_frame_std"] > 0 and math.isfinite(pre.last_val["recon_mse"])

    ik = run(_cfg("train", data_dir, tmp_path / "ik", encoder_from=str(tmp_path / "pre" / "final")), accelerator=acc)
    for key in ("l2_1s", "l2_2s", "l2_3s", "collision_3s", "collision_gt_3s", "target_relative_frame_std", "target_collapsed", "future_r2"):
        assert key in ik.last_val and math.isfinite(ik.last_val[key]), key
    assert ik.last_val["target_relative_frame_std"] > 0
    rows = list(csv.DictReader(open(tmp_path / "ik" / "train_log.csv")))
    assert {"future_state", "trajectory"} <= set(rows[0])
    pipe = load_pipeline(tmp_path / "ik" / "final")
    assert pipe.model.vision_frozen and pipe.model.normalizer.is_fitted
    # The stage-(a) encoder is what the trained model carries (frozen: unchanged by stage b).
    from safetensors.torch import load_file

    enc = load_file(str(tmp_path / "pre" / "final" / "encoder.safetensors"))
    own = pipe.model.get_vision_encoder().state_dict()
    name = next(k for k in enc if k.startswith("backbone."))
    assert torch.equal(enc[name], own[name])

    sc = run(_cfg("train", data_dir, tmp_path / "sc", kind="shortcut", encoder_from=str(tmp_path / "pre" / "final")),
             accelerator=acc)
    assert "l2_3s" in sc.last_val and "future_r2" not in sc.last_val
    assert load_pipeline(tmp_path / "sc" / "final").config.model_type == "shortcut"


def test_pretrain_with_ego_motion_target(data_dir, tmp_path):
    import dataclasses

    from safetensors.torch import load_file

    from training.config import PretrainConfig

    cfg = _cfg("pretrain_encoder", data_dir, tmp_path / "pre", overrides={"image_size": IMAGE, "future_horizons_s": [1.0, 3.0]})
    cfg = dataclasses.replace(cfg, pretrain=PretrainConfig(motion_weight=1.0))
    pre = run(cfg, accelerator=Accelerator(cpu=True))
    for key in ("motion_l2_m", "motion_l2_m_frame0", "motion_l2_m_frame1"):
        assert math.isfinite(pre.last_val[key]) and pre.last_val[key] > 0, key
    # The 3 s frame is farther away than the 1 s frame: an untrained head misses it by more.
    assert pre.last_val["motion_l2_m_frame1"] > pre.last_val["motion_l2_m_frame0"]
    heads = load_file(str(tmp_path / "pre" / "final" / "head.safetensors"))
    assert any(k.startswith("motion.matcher.") for k in heads)
    ik = run(_cfg("train", data_dir, tmp_path / "ik", encoder_from=str(tmp_path / "pre" / "final"),
                  overrides={"image_size": IMAGE, "future_horizons_s": [1.0, 3.0]}), accelerator=Accelerator(cpu=True))
    assert math.isfinite(ik.last_val["l2_3s"])
    shortcut = dataclasses.replace(_cfg("pretrain_encoder", data_dir, tmp_path / "sc", kind="shortcut"),
                                   pretrain=PretrainConfig(motion_weight=1.0))
    with pytest.raises(ConfigError, match="motion_weight: needs an IK model"):
        run(shortcut, accelerator=Accelerator(cpu=True))


def test_config_yaml_round_trip_and_errors(tmp_path):
    cfg = _cfg("train", "data", tmp_path / "o")
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("stage: train\ndata: {train_dir: d}\noptim: {lr: 1e-3, max_step: 5}\n")
    with pytest.raises(ConfigError, match=r"optim.*max_step"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("stage: train\ndata: {train_dir: d}\noptim: {batch_size: '8'}\n")
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(tmp_path / "bad2.yaml")
    (tmp_path / "bad3.yaml").write_text("stage: fly\ndata: {train_dir: d}\n")
    with pytest.raises(ConfigError, match="stage"):
        load_config(tmp_path / "bad3.yaml")


def test_unknown_model_override_is_an_error(data_dir, tmp_path):
    cfg = _cfg("train", data_dir, tmp_path / "x")
    cfg.model.overrides["image_sise"] = [32, 32]
    with pytest.raises(ConfigError, match="image_sise"):
        run(cfg, accelerator=Accelerator(cpu=True))


def test_make_weights_config_rejects_bad_num_samples():
    from training.make_weights import MakeWeightsConfig

    with pytest.raises(ValueError, match="ik_num_samples"):
        MakeWeightsConfig(ik_num_samples=0)


def test_model_overrides_reach_only_the_stages_they_change(tmp_path):
    """future_turn_weight and ik_future_gradient change the IK model's loss only, status_queries both VLAs: the stage
    configs they do not reach stay the same, so --resume reuses those stages."""
    from training.make_weights import MakeWeightsConfig, StageSteps, stage_config

    steps = StageSteps(steps=2)
    base = {"num_cameras": 3, "image_size": [32, 48]}
    plain = MakeWeightsConfig(model_overrides=dict(base))
    reaches = {"future_turn_weight": {("train", "ik")}, "ik_future_gradient": {("train", "ik")},
               "status_queries": {("train", "ik"), ("train", "shortcut")}}
    for key, value in (("future_turn_weight", 4.0), ("ik_future_gradient", 1.0), ("status_queries", True)):
        changed = MakeWeightsConfig(model_overrides={**base, key: value})
        for stage, kind in (("pretrain_encoder", "ik"), ("train", "shortcut"), ("train", "ik")):
            a, b = (stage_config(c, stage, kind, steps, tmp_path, tmp_path / "out", None) for c in (plain, changed))
            assert (a != b) == ((stage, kind) in reaches[key]), (key, stage, kind)
            if a != b:
                assert b.model.overrides[key] == value


def test_finetune_stage_takes_its_own_overrides_and_rejects_others(tmp_path):
    """The fine-tune of a trained model takes finetune_overrides (only those reaching the model kind)
    instead of model_overrides, and starts from the given model."""
    from training.make_weights import MakeWeightsConfig, StageSteps, stage_config

    cfg = MakeWeightsConfig(model_overrides={"num_cameras": 3}, finetune=StageSteps(steps=4, lr=1e-4),
                            finetune_overrides={"ik_future_gradient": 1.0, "future_turn_weight": 4.0})
    ik = stage_config(cfg, "train", "ik", cfg.finetune, tmp_path, tmp_path / "ft", None, init_from=tmp_path / "ik")
    shortcut = stage_config(cfg, "train", "shortcut", cfg.finetune, tmp_path, tmp_path / "ft", None,
                            init_from=tmp_path / "sc")
    assert ik.model.overrides == {"ik_future_gradient": 1.0, "future_turn_weight": 4.0}
    assert ik.model.init_from == str(tmp_path / "ik") and ik.optim.max_steps == 4 and ik.optim.lr == 1e-4
    assert shortcut.model.overrides == {} and shortcut.model.init_from == str(tmp_path / "sc")
    with pytest.raises(ValueError, match="finetune_overrides.*num_cameras"):
        MakeWeightsConfig(finetune_overrides={"num_cameras": 1})


@pytest.mark.slow
def test_make_weights_end_to_end_tiny(tmp_path):
    """collect -> pretrain -> IK -> shortcut -> weights/, with a short route and 2 steps per stage."""
    from agent.agent_config import load_agent_config
    from agent.model import load_pipeline
    from training.config import PretrainConfig
    from training.make_weights import MakeWeightsConfig, StageSteps, run as make_weights

    routes = tmp_path / "r.xml"
    routes.write_text('<routes><route id="1" town="highway"><waypoints><position x="20" y="4" z="0"/>'
                      '<position x="300" y="4" z="0"/></waypoints></route></routes>')
    steps = StageSteps(steps=2, warmup_steps=1)
    cfg = MakeWeightsConfig(
        work_dir=str(tmp_path / "work"), weights_dir=str(tmp_path / "weights"), train_routes=[str(routes)],
        val_routes=[str(routes)], train_repetitions=1, val_repetitions=1, backend="sandbox",
        workers=1, max_ticks=160, pretrain=steps, ik=steps, shortcut=steps, batch_size=4, eval_every=2,
        max_val_frames=8, num_threads=1, ik_num_samples=3, rig="carla-3cam", ground_truth=True,
        model_overrides={"num_cameras": 3, "image_size": [32, 48], "future_horizons_s": [1.0, 2.0]},
        pretrain_targets=PretrainConfig(depth_weight=1.0, semantic_weight=0.5, motion_weight=1.0),
        ik_alone=StageSteps(steps=2), ik_alone_batch_size=4,
        finetune=StageSteps(steps=2, lr=1e-4, warmup_steps=1), finetune_overrides={"ik_future_gradient": 1.0},
    )
    summary = make_weights(cfg, "test")
    alone = tmp_path / "work" / "ik-alone" / "ik_net.safetensors"
    assert alone.is_file() and "oracle" in summary["results"]["ik-alone"]["l2"]
    assert "motion_l2_m" in summary["results"]["pretrain"]["last_val"]
    for name, model_type in (("ik-tiny", "ik_drive"), ("shortcut-tiny", "shortcut")):
        folder = tmp_path / "weights" / name
        agent = load_agent_config(folder / "agent.yaml")
        assert agent.model == folder.resolve() and agent.rig == "carla-3cam"
        assert agent.num_samples == (3 if model_type == "ik_drive" else 1)
        assert load_pipeline(agent.model).config.model_type == model_type
        card = (folder / "README.md").read_text()
        assert "l2_3s" in card and "python -m training.make_weights" not in card and "test" in card
        assert (folder / "training" / "val_log.csv").is_file()
        assert ("IK net alone" in card) == (model_type == "ik_drive") and "ego motion between frames" in card
        assert summary["results"][name]["size_mb"] < 50
        # the shipped model is the fine-tune of the stage-(b) model, with its override where it reaches
        assert summary["results"][name]["final_model"].startswith(str(tmp_path / "work" / f"{name}-finetune"))
        assert "3. fine-tune from step 2's model: 2 more steps" in card
        assert ("ik_future_gradient" in card) == (model_type == "ik_drive")
        if model_type == "ik_drive":
            assert load_pipeline(agent.model).config.ik_net.future_gradient == 1.0
        assert (folder / "training" / "stage_b" / "train_log.csv").is_file()
    assert summary["manifests"]["train"]["frames"] == 80
    assert "depth_log_l1" in summary["results"]["pretrain"]["last_val"]
    # --resume reuses every finished stage with its own time and metrics; nothing is trained again
    log = tmp_path / "work" / "ik-tiny" / "train_log.csv"
    before, alone_before = log.stat().st_mtime_ns, alone.stat().st_mtime_ns
    again = make_weights(cfg, "test", resume=True)
    assert log.stat().st_mtime_ns == before and alone.stat().st_mtime_ns == alone_before
    for name in ("pretrain", "ik-tiny", "shortcut-tiny", "ik-tiny stage b"):
        assert again["results"][name]["wall_s"] == summary["results"][name]["wall_s"]
        assert again["results"][name]["last_val"] == summary["results"][name]["last_val"]


def test_real_model_resume_matches_uninterrupted_run(data_dir, tmp_path):
    from safetensors.torch import load_file

    cfg = _cfg("train", data_dir, tmp_path / "full")
    cfg.optim.max_steps, cfg.log.save_every, cfg.log.eval_every = 4, 2, 100
    acc = Accelerator(cpu=True)
    run(cfg, accelerator=acc)
    # Resume the same run from its step-2 checkpoint in a fresh folder.
    cfg.log.output_dir = str(tmp_path / "part")
    resumed = run(cfg, resume=str(tmp_path / "full" / "checkpoints" / "step_0000002"), accelerator=acc)
    assert resumed.resumed_from.endswith("step_0000002") and resumed.final_step == 4
    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_full = list(csv.DictReader(open(tmp_path / "full" / "train_log.csv")))
    rows_part = list(csv.DictReader(open(tmp_path / "part" / "train_log.csv")))
    assert [int(r["step"]) for r in rows_part] == [3, 4]
    assert [r["loss"] for r in rows_full[2:]] == [r["loss"] for r in rows_part]


def test_shipped_make_weights_recipes_load_and_differ_only_where_marked():
    import dataclasses
    from pathlib import Path

    from training.make_weights import load_make_weights_config

    configs = Path(__file__).resolve().parents[1] / "training" / "configs"
    base = dataclasses.asdict(load_make_weights_config(configs / "make_weights.yaml"))
    motion = dataclasses.asdict(load_make_weights_config(configs / "make_weights_motion.yaml"))
    changed = sorted(k for k in base if base[k] != motion[k])
    assert changed == ["ik_alone", "pretrain_targets", "weights_dir", "work_dir"]
    assert base["ik_alone"]["steps"] == 0 and motion["ik_alone"]["steps"] > 0
    assert base["pretrain_targets"]["motion_weight"] == 0 and motion["pretrain_targets"]["motion_weight"] > 0
    assert motion["weights_dir"] != "weights"  # the variant never overwrites the shipped weights


def test_turn_repeat_oversamples_the_turning_frames(data_dir, tmp_path, caplog):
    import logging

    import numpy as np

    from training.dataset import RepeatedSamples, turn_repeats

    traj = np.zeros((4, 6, 2), dtype=np.float32)
    traj[:, -1, 1] = [0.0, 2.9, -3.0, 7.0]
    repeats = turn_repeats(traj, 3, 3.0)
    assert repeats.tolist() == [1, 1, 3, 3]
    with pytest.raises(ValueError, match="repeat"):
        turn_repeats(traj, 0, 3.0)
    items = RepeatedSamples(["a", "b", "c", "d"], repeats)
    assert len(items) == 8 and [items[i] for i in range(8)] == ["a", "b", "c", "c", "c", "d", "d", "d"]
    with pytest.raises(ValueError, match="repeats"):
        RepeatedSamples(["a", "b"], np.array([1]))
    # stage (b) trains on the oversampled set; the trajectory normaliser is still fitted on the plain one
    cfg = _cfg("train", data_dir, tmp_path / "b", kind="ik")
    cfg.data.turn_repeat, cfg.data.turn_repeat_min_m = 2, 0.5
    with caplog.at_level(logging.INFO, logger="training"):
        assert run(cfg, accelerator=Accelerator(cpu=True)).final_step == 2
    assert any("turn oversampling" in r.getMessage() for r in caplog.records)
    bad = _cfg("pretrain_encoder", data_dir, tmp_path / "a")
    bad.data.turn_repeat = 2
    with pytest.raises(ConfigError, match="turn_repeat"):
        run(bad, accelerator=Accelerator(cpu=True))


def test_stage_b_oversamples_critical_frames_and_pretraining_refuses_it(data_dir, tmp_path, caplog):
    import logging

    from training.critical_frames import KINDS, CriticalFrameConfig

    cfg = _cfg("train", data_dir, tmp_path / "b", kind="ik")
    cfg.data.critical = CriticalFrameConfig(repeat=2, lateral_m=0.5)
    with caplog.at_level(logging.INFO, logger="training"):
        assert run(cfg, accelerator=Accelerator(cpu=True)).final_step == 2
    logged = [r.getMessage() for r in caplog.records if "critical frames" in r.getMessage()]
    assert logged and all(k in logged[0] for k in KINDS)
    bad = _cfg("pretrain_encoder", data_dir, tmp_path / "a")
    bad.data.critical = CriticalFrameConfig(repeat=2)
    with pytest.raises(ConfigError, match="critical"):
        run(bad, accelerator=Accelerator(cpu=True))


def test_mask_plan_label_future_trains_the_ik_model_and_is_refused_elsewhere(data_dir, tmp_path):
    acc = Accelerator(cpu=True)
    sc = _cfg("train", data_dir, tmp_path / "sc", kind="shortcut")
    sc.data.mask_plan_label_future = True
    with pytest.raises(ConfigError, match="mask_plan_label_future"):
        run(sc, accelerator=acc)
    pre = _cfg("pretrain_encoder", data_dir, tmp_path / "pre")
    pre.data.mask_plan_label_future = True
    with pytest.raises(ConfigError, match="mask_plan_label_future"):
        run(pre, accelerator=acc)
    ik = _cfg("train", data_dir, tmp_path / "ik")
    ik.data.mask_plan_label_future = True
    result = run(ik, accelerator=acc)
    rows = list(csv.DictReader(open(tmp_path / "ik" / "train_log.csv")))
    assert result.final_step == 2 and all(math.isfinite(float(r["future_state"])) for r in rows)


def test_model_card_says_when_the_collection_was_not_timed():
    from training.make_weights import MakeWeightsConfig, model_card

    cfg = MakeWeightsConfig()
    manifests = {"train": {"totals": {"episodes": 1, "frames": 10, "perturbed_frames": 2}},
                 "val": {"totals": {"episodes": 1, "frames": 5}}}
    reused = model_card("ik-tiny", "ik", cfg, manifests, {"encoder pre-training": 60.0}, {}, {"total": 1}, "cmd")
    assert "not timed here (`--skip-collect`" in reused and "data collection: 0.0" not in reused
    timed = model_card("ik-tiny", "ik", cfg, manifests, {"data collection": 120.0}, {}, {"total": 1}, "cmd")
    assert "- data collection: 2.0 min" in timed and "not timed here" not in timed
