"""Data collection: perturbations, sensor merging, and a real sandbox + expert run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.collection import CollectConfig, NoiseConfig, Perturber, merge_sensors, run_collection
from training.recording import RecorderConfig

SANDBOX = "sandbox"
ROUTE = """<routes>
  <route id="7" town="highway">
    <waypoints><position x="20.0" y="4.0" z="0.0"/><position x="400.0" y="4.0" z="0.0"/></waypoints>
    <scenarios><scenario name="sv" type="SlowVehicle"><trigger_point x="90.0" y="4.0" z="0.0" yaw="0.0"/></scenario></scenarios>
  </route>
</routes>
"""


def test_noise_parse():
    assert NoiseConfig.parse("none").rate_hz == 0.0
    assert NoiseConfig.parse("default") == NoiseConfig()
    cfg = NoiseConfig.parse("rate=0.5,duration=0.2-0.8,steer=0.4")
    assert (cfg.rate_hz, cfg.min_duration_s, cfg.max_duration_s, cfg.steer_max) == (0.5, 0.2, 0.8, 0.4)
    with pytest.raises(ValueError, match="unknown key"):
        NoiseConfig.parse("rat=1")
    with pytest.raises(ValueError, match="durations"):
        NoiseConfig.parse("duration=2-1")


def test_perturber_segments_are_deterministic_and_bounded():
    cfg = NoiseConfig(rate_hz=2.0, warmup_s=1.0, longitudinal_prob=0.5)
    runs = []
    for _ in range(2):
        p = Perturber(cfg, seed=5, dt=0.05)
        runs.append([p.step(t, 0.3, 0.9, 0.0) for t in range(2000)])
    assert runs[0] == runs[1]
    flags = np.array([r[3] for r in runs[0]])
    assert not flags[:20].any() and 0.05 < flags.mean() < 0.9  # nothing during warm-up, then segments
    steer = np.array([r[1] for r in runs[0]])
    assert steer.max() <= 1.0 and steer.min() >= -1.0
    assert np.all(steer[~flags] == 0.9)  # untouched outside segments
    assert not Perturber(NoiseConfig(rate_hz=0.0), 1, 0.05).step(500, 0.3, 0.0, 0.0)[3]


def test_merge_sensors():
    cam = {"type": "sensor.camera.rgb", "id": "bev", "x": 8.0, "width": 128}
    merged = merge_sensors([cam, {"type": "sensor.speedometer", "id": "speed"}],
                           [dict(cam), {"type": "sensor.speedometer", "id": "speed", "reading_frequency": 20},
                            {"type": "sensor.other.gnss", "id": "gnss"}])
    assert [s["id"] for s in merged] == ["bev", "speed", "gnss"]
    with pytest.raises(ValueError, match="bev"):
        merge_sensors([cam], [{**cam, "width": 64}])


@pytest.mark.slow
def test_collect_one_route_with_the_sandbox_expert(tmp_path):
    from training.manifest import scan_dataset

    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    cfg = CollectConfig(routes=(str(routes),), out=str(tmp_path / "data"), backend=SANDBOX, repetitions=1, seed=3,
                        noise=NoiseConfig(rate_hz=0.2, warmup_s=1.0), recorder=RecorderConfig(), max_ticks=300)
    manifest = run_collection(cfg)
    assert manifest["totals"] == {"episodes": 1, "frames": 150, "perturbed_frames": manifest["totals"]["perturbed_frames"],
                                  "student_frames": 0, "failed": 0}
    assert manifest["config"]["seed"] == 3 and manifest["episodes"][0]["seed"] == 3
    scan = scan_dataset(tmp_path / "data")
    assert not scan.skipped and len(scan.episodes) == 1
    ep = scan.episodes[0]
    a = ep.arrays
    assert ep.meta.town == "highway" and ep.meta.scenario == "SlowVehicle" and ep.meta.num_ticks == 300
    img = ep.image(60, 0)
    assert img.shape == (128, 128, 3) and len(np.unique(img.reshape(-1, 3), axis=0)) > 3
    assert a["speed"][-1] > 3.0 and (a["command"] == 4).all()
    # Route along world +x at y = 4: the target point lies ahead of the ego (the agent's route planner).
    assert (a["target_point"][:, 0] > 0).mean() > 0.95 and (np.linalg.norm(a["target_point"], axis=1) < 100).all()
    # Labels: actual future path; where no perturbation touched the window it follows the expert's plan.
    clean = a["trajectory_valid"] & ~a["future_perturbed"]
    assert clean.sum() > 20
    err = np.linalg.norm(a["trajectory"][clean] - a["expert_plan"][clean], axis=-1)[:, 0]
    assert np.median(err) < 0.5
    assert a["perturbed"].any() and (ep.arrays["box_offsets"][-1] > 0)
    # Re-running reuses the verified episode instead of recording it again.
    again = run_collection(cfg)
    assert again["episodes"][0].get("reused") and again["episodes"][0]["sha256"] == manifest["episodes"][0]["sha256"]
    json.dumps(again)


def test_collect_records_camera_ground_truth_for_the_three_cameras(tmp_path):
    from training.manifest import scan_dataset

    routes = tmp_path / "r.xml"
    routes.write_text(ROUTE)
    agent_yaml = tmp_path / "agent.yaml"
    agent_yaml.write_text("model: .\nrig: carla-3cam\nlat_ref: 0.0\nlon_ref: 0.0\n")
    cams = ("left", "front", "right")
    cfg = CollectConfig(routes=(str(routes),), out=str(tmp_path / "data"), backend=SANDBOX, repetitions=1, seed=3,
                        noise=NoiseConfig(rate_hz=0.0), recorder=RecorderConfig(cameras=cams, ground_truth=True),
                        agent_config=str(agent_yaml), max_ticks=40)
    manifest = run_collection(cfg)
    assert manifest["totals"]["failed"] == 0, manifest
    ep = scan_dataset(tmp_path / "data").episodes[0]
    assert ep.meta.ground_truth == ["depth", "semantic"] and ep.meta.cameras == list(cams)
    h, w = ep.image(5, 1).shape[:2]
    for c in range(3):
        depth, tags = ep.depth(5, c), ep.semantic(5, c)
        assert depth.shape == tags.shape == (h, w) and depth.dtype == np.float32 and tags.dtype == np.uint8
        assert (tags[-1] != 11).all() and (tags[0] == 11).any()  # ground at the bottom, sky at the top
        assert 1.0 < float(np.median(depth[-1])) < 15.0 and np.isclose(depth[tags == 11], 655.35).all()
    assert {1, 24} <= set(np.unique(ep.semantic(5, 1)).tolist())  # road and lane lines ahead
    # An episode without ground truth says so when asked for it.
    plain = RecorderConfig(cameras=cams)
    cfg2 = CollectConfig(routes=(str(routes),), out=str(tmp_path / "plain"), backend=SANDBOX, repetitions=1, seed=3,
                         noise=NoiseConfig(rate_hz=0.0), recorder=plain, agent_config=str(agent_yaml), max_ticks=10)
    run_collection(cfg2)
    bare = scan_dataset(tmp_path / "plain").episodes[0]
    with pytest.raises(ValueError, match="no depth ground truth recorded"):
        bare.depth(0, 0)
