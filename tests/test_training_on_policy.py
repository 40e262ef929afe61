"""On-policy collection (DAgger): a student drives, the expert labels every state it reaches."""

from __future__ import annotations

import numpy as np
import pytest

from training.collection import (
    CollectConfig,
    DriverSchedule,
    NoiseConfig,
    OnPolicyConfig,
    run_collection,
)
from training.episodes import EpisodeError, read_episode, write_episode
from training.manifest import scan_dataset
from training.recording import RecorderConfig

ROUTE = """<routes>
  <route id="3" town="highway">
    <waypoints><position x="20.0" y="4.0" z="0.0"/><position x="400.0" y="4.0" z="0.0"/></waypoints>
    <scenarios><scenario name="sv" type="SlowVehicle"><trigger_point x="150.0" y="4.0" z="0.0" yaw="0.0"/></scenario></scenarios>
  </route>
</routes>
"""

# A leaderboard agent that steers hard left at full throttle and counts its calls: when it drives,
# the car leaves the expert's path; the expert's plan must still be the label there.
STUDENT = '''
import carla

from agent.base_agent import AutonomousAgent


def get_entry_point():
    return "LeftStudent"


class LeftStudent(AutonomousAgent):
    calls = 0
    setups = []
    destroyed = 0

    def setup(self, path_to_conf_file):
        LeftStudent.setups.append(path_to_conf_file)

    def sensors(self):
        return [{"type": "sensor.speedometer", "reading_frequency": 20, "id": "speed"}]

    def run_step(self, input_data, timestamp):
        LeftStudent.calls += 1
        assert "speed" in input_data
        return carla.VehicleControl(throttle=1.0, steer=-0.5, brake=0.0)

    def destroy(self):
        LeftStudent.destroyed += 1
'''


def test_driver_schedule():
    def drivers(beta, seed=1, ticks=4000):
        s = DriverSchedule(beta, window_s=0.5, seed=seed, dt=0.05)
        return np.array([s.student_drives(t) for t in range(ticks)]), s

    always, s = drivers(0.0)
    assert always.all() and s.student_ticks == 4000
    assert not drivers(1.0)[0].any()
    mixed, s = drivers(0.3)
    assert s.student_ticks == int(mixed.sum()) and 0.6 < mixed.mean() < 0.8
    windows = mixed.reshape(-1, 10)  # 0.5 s = 10 ticks: one driver per window
    assert (windows == windows[:, :1]).all()
    assert (drivers(0.3)[0] == mixed).all() and not (drivers(0.3, seed=2)[0] == mixed).all()


def test_on_policy_config_is_checked():
    with pytest.raises(ValueError, match=r"\.py"):
        OnPolicyConfig("agent/ik_agent.yaml")
    with pytest.raises(ValueError, match="beta"):
        OnPolicyConfig("a.py", beta=1.5)
    with pytest.raises(ValueError, match="window"):
        OnPolicyConfig("a.py", window_s=0.0)
    assert OnPolicyConfig("a.py", "c.yaml", 0.25, 2.0).to_meta() == {"agent": "a.py", "config": "c.yaml", "beta": 0.25,
                                                                      "window_s": 2.0}


def _collect(tmp_path, out, beta, max_ticks=240):
    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    # one module name per test: the loader, like the leaderboard's, imports an agent file by its name once
    student = tmp_path / f"left_student_{tmp_path.name}.py"
    student.write_text(STUDENT)
    cfg = CollectConfig(routes=(str(routes),), out=str(tmp_path / out), backend="sandbox", seed=5,
                        noise=NoiseConfig(rate_hz=0.0), recorder=RecorderConfig(), max_ticks=max_ticks,
                        policy=OnPolicyConfig(str(student), "student.yaml", beta=beta, window_s=1.0))
    return cfg, run_collection(cfg)


def test_the_student_drives_and_the_expert_labels(tmp_path):
    from training.collection import _STUDENT_CLASSES

    cfg, manifest = _collect(tmp_path, "mixed", beta=0.5)
    assert manifest["totals"]["failed"] == 0, manifest
    (entry,) = manifest["episodes"]
    ep = read_episode(tmp_path / "mixed" / entry["file"])
    a = ep.arrays
    assert ep.meta.policy == cfg.policy.to_meta()
    student = a["student_drove"]
    assert entry["student_frames"] == int(student.sum()) and 0 < student.sum() < len(student)
    assert manifest["totals"]["student_frames"] == entry["student_frames"] and 0 < entry["student_ticks"]
    assert (a["perturbed"] == student).all()  # no noise: a tick is perturbed exactly when the student drove
    assert np.allclose(a["control"][student], [1.0, -0.5, 0.0])
    assert not np.isclose(a["control"][~student], [1.0, -0.5, 0.0], atol=1e-3).all(axis=1).any()
    # the student was set up with its config, called every tick (whoever drove), and destroyed
    cls = _STUDENT_CLASSES[str((tmp_path / f"left_student_{tmp_path.name}.py").resolve())]
    assert cls.setups == ["student.yaml"] and cls.calls == ep.meta.num_ticks and cls.destroyed == 1
    # a frame whose future the student drove is labelled with the expert's plan from that state
    scan = scan_dataset(tmp_path / "mixed")
    assert len(scan.episodes) == 1 and a["future_perturbed"].any()
    from training.dataset import build_index

    idx = build_index(scan.episodes, perturbed_label="plan", horizon_s=1.0)
    assert idx.use_plan.any()
    assert (idx.use_plan == a["future_perturbed"][idx.frames]).all()
    from training.dataset import DrivingDataset

    ds = DrivingDataset(scan.episodes, image_size=(32, 32), horizon_s=1.0, cache_images=False, with_boxes=False,
                        with_future_valid=True)
    some = range(0, len(ds), 9)
    assert [bool(ds[i]["future_valid"]) for i in some] == [not ds.index.use_plan[i] for i in some]
    # the student's left steering took the car off its lane; the expert plans back towards it
    heading = np.unwrap(a["ego_pose"][:, 2])
    assert heading.min() < -0.05
    steered_away = a["ego_pose"][:, 1] < 3.0
    assert steered_away.any() and (a["expert_plan"][steered_away, -1, 1] > 0.3).any()

    # the same config gives the same episode (the driver windows are seeded by the job's seed)
    again = run_collection(cfg)
    assert again["episodes"][0]["reused"] and again["episodes"][0]["sha256"] == entry["sha256"]
    # an episode recorded with another policy setting is recorded again, not reused
    cfg2, other = _collect(tmp_path, "mixed", beta=1.0)
    (e2,) = other["episodes"]
    assert not e2.get("reused") and e2["student_frames"] == 0 and e2["sha256"] != entry["sha256"]


def test_beta_zero_lets_the_student_drive_throughout(tmp_path):
    _, manifest = _collect(tmp_path, "all", beta=0.0, max_ticks=60)
    (entry,) = manifest["episodes"]
    a = read_episode(tmp_path / "all" / entry["file"]).arrays
    assert a["student_drove"].all() and entry["student_ticks"] == 60


def test_on_policy_episodes_must_say_who_drove(tmp_path):
    _, manifest = _collect(tmp_path, "x", beta=0.5, max_ticks=60)
    path = tmp_path / "x" / manifest["episodes"][0]["file"]
    ep = read_episode(path)
    arrays = dict(ep.arrays)
    drove = arrays.pop("student_drove")
    with pytest.raises(EpisodeError, match="missing arrays.*student_drove"):
        write_episode(tmp_path / "bad.npz", ep.meta, arrays)
    arrays["student_drove"] = drove | True
    arrays["perturbed"] = np.zeros_like(drove)
    with pytest.raises(EpisodeError, match="not marked perturbed"):
        write_episode(tmp_path / "bad.npz", ep.meta, arrays)
    ep.meta.policy = {}
    arrays["student_drove"] = drove
    with pytest.raises(EpisodeError, match="unexpected arrays.*student_drove"):
        write_episode(tmp_path / "bad.npz", ep.meta, arrays)


def test_collect_cli_refuses_beta_without_a_policy(tmp_path, capsys):
    from carla_eval.cli import main

    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    assert main(["collect", "--routes", str(routes), "--out", str(tmp_path / "d"), "--beta", "0.5"]) == 2
    assert "--beta need --policy" in capsys.readouterr().err
    assert main(["collect", "--routes", str(routes), "--out", str(tmp_path / "d"), "--policy", "x.yaml"]) == 2
    assert "must be a leaderboard agent .py file" in capsys.readouterr().err
