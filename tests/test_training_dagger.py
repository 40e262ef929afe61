"""The DAgger loop: its schedule, its configs and one real iteration on the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from training.dagger import (DaggerConfig, SuiteRange, finetune_config, iteration_routes, load_dagger_config, run,
                             student_agent_yaml)
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


def test_the_shipped_config_loads():
    cfg = load_dagger_config(ROOT / "training" / "configs" / "dagger.yaml")
    assert cfg.initial_model == "weights/ik-tiny" and cfg.training_suites.first >= 1  # suite 0 is make weights'


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
    cfg = DaggerConfig(work_dir=str(tmp_path / "dagger"), initial_model=str(SHIPPED),
                       agent_file=str(ROOT / "agent" / "ik_agent.py"), expert_data=[str(tmp_path / "expert")],
                       val_data=str(tmp_path / "val"), iterations=1, beta=0.5, max_routes=2, max_ticks=100, workers=1,
                       finetune=StageSteps(steps=2, lr=1e-5, warmup_steps=1), eval_every=2, num_threads=1)
    state = run(cfg)
    (it,) = state["iterations"]
    assert it["beta"] == 0.5 and it["student"] == str(SHIPPED) and it["collection"]["failed"] == 0
    assert 0 < it["collection"]["student_frames"] < it["collection"]["frames"]
    assert it["datasets"] == [str(tmp_path / "expert"), str(tmp_path / "dagger" / "iter_0" / "data")]
    assert Path(it["model"], "model.safetensors").is_file() and it["last_val"]
    saved = json.loads((tmp_path / "dagger" / "dagger.json").read_text())
    assert saved["iterations"][0]["model"] == it["model"]
    files = sorted((tmp_path / "dagger" / "iter_0" / "data").glob("*.npz"))
    ep = read_episode(files[0])
    assert ep.meta.policy["agent"].endswith("ik_agent.py") and ep.meta.policy["beta"] == 0.5
    # run again: nothing is recorded or trained again
    log = tmp_path / "dagger" / "iter_0" / "finetune" / "train_log.csv"
    stamps = [p.stat().st_mtime_ns for p in [*files, log]]
    again = run(cfg)
    assert again["iterations"][0]["model"] == it["model"]
    assert [p.stat().st_mtime_ns for p in [*files, log]] == stamps
    with pytest.raises(ValueError, match="another DAgger config"):
        run(DaggerConfig(**{**cfg.__dict__, "beta": 0.4}))
