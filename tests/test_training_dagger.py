"""The DAgger loop: its schedule, its configs and one real iteration on the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training.dagger import (DaggerConfig, LoopEvaluation, SuiteRange, finetune_config, iteration_routes,
                             load_dagger_config, run, same_loop, student_agent_yaml)
from training.dagger_plot import ds_table, markdown_table, plot
from training.make_weights import StageSteps

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "ik-tiny"


def test_schedule_and_suites():
    cfg = DaggerConfig(beta=0.8, beta_decay=0.5, training_suites=SuiteRange(first=2, per_iteration=3))
    assert [cfg.beta_at(i) for i in range(3)] == [0.8, 0.4, 0.2]
    assert cfg.suites_at(0) == [2, 3, 4] and cfg.suites_at(1) == [5, 6, 7]
    with pytest.raises(ValueError, match="iterations"):
        DaggerConfig(iterations=0)
    with pytest.raises(ValueError, match="beta"):
        DaggerConfig(beta=1.2)
    with pytest.raises(ValueError, match="training_suites"):
        DaggerConfig(training_suites=SuiteRange(first=0, per_iteration=0))
    with pytest.raises(ValueError, match="folder names must differ"):
        DaggerConfig(initial_model="weights/ik-tiny", baselines=["other/ik-tiny"])
    with pytest.raises(ValueError, match="folder names must differ"):
        DaggerConfig(baselines=["runs/expert"])
    with pytest.raises(ValueError, match="evaluation.seeds"):
        LoopEvaluation(seeds=[])
    with pytest.raises(ValueError, match="evaluation.workers"):
        LoopEvaluation(workers=0)


def _eval(ds: list[float]) -> dict:
    import numpy as np

    return {"model": "m", "ds": {str(i): d for i, d in enumerate(ds)}, "ds_mean": float(np.mean(ds)),
            "ds_sd": float(np.std(ds, ddof=1)) if len(ds) > 1 else None, "runs": {},
            "per_seed": {str(i): {"rc": d, "success": 1, "abilities": {"Merging": [int(d > 50), 1], "Overtaking": [0, 2]},
                                  "statuses": {}} for i, d in enumerate(ds)}}


def test_ds_table_and_plot_read_the_loop_state(tmp_path):
    state = {"config": {"evaluation": {"seeds": [0, 1]}},
             "initial_eval": {"expert": _eval([100.0, 98.0]), "ik-tiny": _eval([60.0, 70.0]),
                              "shortcut-tiny": _eval([30.0, 40.0])},
             "iterations": [{"index": 0, "eval": {"ik-tiny": _eval([80.0, 84.0]), "shortcut-tiny": _eval([35.0, 45.0])}},
                            {"index": 1}]}  # iteration 1: not evaluated yet
    table = ds_table(state)
    assert table["expert"] == [(0, 99.0, pytest.approx(1.414, abs=1e-3))]
    assert [(x, m) for x, m, _ in table["ik-tiny"]] == [(0, 65.0), (1, 82.0)]
    assert [(x, m) for x, m, _ in table["shortcut-tiny"]] == [(0, 35.0), (1, 40.0)]
    lines = markdown_table(state).splitlines()
    assert lines[0] == "| model | iteration | DS per seed | DS mean ± sd | RC % | Merging | Overtaking |"
    assert lines[3] == "| ik-tiny | 0 | 60.00 / 70.00 | 65.00 ± 7.07 | 65.0 | 2/2 | 0/4 |"
    assert len(lines) == 2 + 5
    out = plot(state, tmp_path / "img" / "ds.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    with pytest.raises(ValueError, match="no closed-loop evaluation"):
        plot({"iterations": [{"index": 0}]}, tmp_path / "none.png")


def test_the_shipped_config_loads():
    cfg = load_dagger_config(ROOT / "training" / "configs" / "dagger.yaml")
    assert cfg.initial_model == "weights/ik-tiny" and cfg.training_suites.first >= 1  # suite 0 is make weights'
    assert cfg.baselines == ["weights/shortcut-tiny"] and cfg.evaluation.routes == "routes/sandbox/bench.xml"


def test_the_learning_rate_study_is_controlled():
    """docs/training.md, section 1b: the lr-2e-5 loop is the shipped loop with only the fine-tune's
    learning rate (and its folder) changed, and its control is that loop's iteration-0 fine-tune on
    the expert data alone, so the on-policy data is the only difference between the two."""
    import dataclasses

    from training.config import load_config

    base = load_dagger_config(ROOT / "training" / "configs" / "dagger.yaml")
    low = load_dagger_config(ROOT / "training" / "configs" / "dagger_lr2e-5.yaml")
    assert (base.finetune.lr, low.finetune.lr) == (1e-4, 2e-5) and low.work_dir != base.work_dir
    assert dataclasses.replace(low, work_dir=base.work_dir, finetune=base.finetune) == base
    control = load_config(ROOT / "training" / "configs" / "control_expert_lr2e-5.yaml")
    template = load_config(SHIPPED / "training" / "config.yaml")
    expected = finetune_config(low, template, Path(low.initial_model), list(low.expert_data),
                               Path(control.log.output_dir))
    assert control.data.mask_plan_label_future and control.optim.lr == low.finetune.lr
    # the logging cadence and the stage-(a) section (unused by stage "train") are all that may differ
    assert dataclasses.replace(expected, pretrain=control.pretrain, log=control.log) == control
    assert control.log.output_dir not in (low.work_dir, base.work_dir)


def test_a_loop_continues_for_more_iterations_but_not_under_other_settings():
    from training.config import to_dict

    base = DaggerConfig(iterations=1)
    assert same_loop(to_dict(base), to_dict(DaggerConfig(iterations=3)))
    assert not same_loop(to_dict(base), to_dict(DaggerConfig(iterations=1, beta=0.4)))
    assert not same_loop(to_dict(base), to_dict(DaggerConfig(iterations=1, evaluation=LoopEvaluation())))


def test_iteration_routes_are_training_suites_cut_evenly(tmp_path):
    from carla_eval.routes import parse_routes_file
    from carla_eval.sandbox.make_routes import SUITE_SEED_SPAN, training_seed

    cfg = DaggerConfig(work_dir=str(tmp_path), max_routes=8, training_suites=SuiteRange(first=5, per_iteration=1))
    (path,) = iteration_routes(cfg, 1)
    routes = parse_routes_file(path)
    assert Path(path).name == "train_6.xml" and len(routes) == 8
    assert all(training_seed(6) <= int(r.attributes["seed"]) < training_seed(6) + SUITE_SEED_SPAN for r in routes)
    assert len({r.town for r in routes}) >= 4  # spread over the suite, not its first routes
    assert Path(iteration_routes(cfg, 1)[0]).read_bytes() == Path(path).read_bytes()


def test_student_yaml_and_finetune_config(tmp_path):
    from training.config import load_config

    yml = student_agent_yaml(tmp_path / "model", SHIPPED / "agent.yaml", tmp_path / "s.yaml")
    settings = yaml.safe_load(yml.read_text())
    shipped = yaml.safe_load((SHIPPED / "agent.yaml").read_text())
    assert settings["model"] == str((tmp_path / "model").resolve())
    assert {k: v for k, v in settings.items() if k != "model"} == {k: v for k, v in shipped.items() if k != "model"}
    template = load_config(SHIPPED / "training" / "config.yaml")
    cfg = DaggerConfig(val_data="v", finetune=StageSteps(steps=7, lr=2e-5, warmup_steps=1))
    stage = finetune_config(cfg, template, tmp_path / "student", ["a", "b", "c"], tmp_path / "out")
    assert stage.data.train_dir == "a" and stage.data.extra_train_dirs == ["b", "c"] and stage.data.val_dir == "v"
    assert stage.model.init_from == str(tmp_path / "student") and stage.model.kind == template.model.kind
    assert stage.model.overrides == template.model.overrides  # the shipped fine-tune's settings, all init_from-able
    assert (stage.optim.max_steps, stage.optim.lr) == (7, 2e-5) and stage.log.output_dir == str(tmp_path / "out")
    assert stage.data.token_cache == template.data.token_cache and stage.data.mask_plan_label_future


@pytest.mark.slow
def test_one_dagger_iteration_drives_the_shipped_model_and_fine_tunes_it(tmp_path):
    from training.collection import CollectConfig, NoiseConfig, run_collection
    from training.episodes import read_episode
    from training.recording import RecorderConfig

    agent_yaml = tmp_path / "collect.yaml"
    agent_yaml.write_text("model: .\nrig: carla-3cam\nlat_ref: 0.0\nlon_ref: 0.0\n")
    cams = ("left", "front", "right")
    route = tmp_path / "r.xml"
    route.write_text(
        '<routes><route id="0" town="highway"><waypoints><position x="20.0" y="4.0" z="0.0"/>'
        '<position x="400.0" y="4.0" z="0.0"/></waypoints><scenarios/></route></routes>')
    for name, ticks in (("expert", 120), ("val", 100)):
        run_collection(CollectConfig(routes=(str(route),), out=str(tmp_path / name), seed=1, noise=NoiseConfig(rate_hz=0.0),
                                     recorder=RecorderConfig(cameras=cams), agent_config=str(agent_yaml), max_ticks=ticks))
    eval_route = tmp_path / "eval.xml"
    eval_route.write_text(
        '<routes><route id="0" town="highway"><waypoints><position x="20.0" y="4.0" z="0.0"/>'
        '<position x="80.0" y="4.0" z="0.0"/></waypoints><scenarios/></route></routes>')
    shortcut = ROOT / "weights" / "shortcut-tiny"
    cfg = DaggerConfig(work_dir=str(tmp_path / "dagger"), initial_model=str(SHIPPED),
                       agent_file=str(ROOT / "agent" / "ik_agent.py"), expert_data=[str(tmp_path / "expert")],
                       val_data=str(tmp_path / "val"), iterations=1, beta=0.5, max_routes=2, max_ticks=100, workers=1,
                       finetune=StageSteps(steps=2, lr=1e-5, warmup_steps=1), eval_every=2, num_threads=1,
                       baselines=[str(shortcut)], evaluation=LoopEvaluation(routes=str(eval_route), seeds=[0]))
    state = run(cfg)
    initial = state["initial_eval"]
    assert set(initial) == {"expert", "ik-tiny", "shortcut-tiny"}
    assert initial["expert"]["model"] == "expert" and initial["shortcut-tiny"]["model"] == str(shortcut)
    assert all(0.0 <= r["ds_mean"] <= 100.0 and r["ds_sd"] is None for r in initial.values())
    assert initial["expert"]["ds_mean"] > 90.0  # a straight, empty 60 m route
    assert initial["expert"]["per_seed"]["0"]["success"] == 1 and initial["expert"]["per_seed"]["0"]["rc"] == 100.0
    (it,) = state["iterations"]
    assert it["beta"] == 0.5 and it["student"] == str(SHIPPED) and it["collection"]["failed"] == 0
    assert 0 < it["collection"]["student_frames"] < it["collection"]["frames"]
    assert it["datasets"] == [str(tmp_path / "expert"), str(tmp_path / "dagger" / "iter_0" / "data")]
    assert Path(it["model"], "model.safetensors").is_file() and it["last_val"]
    base = it["baselines"]["shortcut-tiny"]
    assert base["from"] == str(shortcut) and Path(base["model"], "model.safetensors").is_file()
    assert base["model"] != it["model"] and base["last_val"]
    assert {n: r["model"] for n, r in it["eval"].items()} == {"ik-tiny": it["model"], "shortcut-tiny": base["model"]}
    assert Path(it["eval"]["ik-tiny"]["runs"]["0"], "results.json").is_file()
    saved = json.loads((tmp_path / "dagger" / "dagger.json").read_text())
    assert saved["iterations"][0]["model"] == it["model"] and saved["initial_eval"] == initial
    assert [x for x, _, _ in ds_table(saved)["shortcut-tiny"]] == [0, 1]
    files = sorted((tmp_path / "dagger" / "iter_0" / "data").glob("*.npz"))
    ep = read_episode(files[0])
    assert ep.meta.policy["agent"].endswith("ik_agent.py") and ep.meta.policy["beta"] == 0.5
    # run again: nothing is recorded or trained again
    log = tmp_path / "dagger" / "iter_0" / "finetune" / "train_log.csv"
    results = sorted((tmp_path / "dagger").rglob("results.json"))
    assert len(results) == 5  # expert, ik and shortcut before the loop; ik and shortcut after iteration 0
    stamps = [p.stat().st_mtime_ns for p in [*files, log, *results]]
    again = run(cfg)
    assert again["iterations"][0]["model"] == it["model"] and again["iterations"][0]["eval"] == it["eval"]
    assert [p.stat().st_mtime_ns for p in [*files, log, *results]] == stamps
    with pytest.raises(ValueError, match="another DAgger config"):
        run(DaggerConfig(**{**cfg.__dict__, "beta": 0.4}))
