"""Projection of ego-frame points and failure videos (decoded back with PyAV)."""

import math

import numpy as np
import pytest

from agent.debug_frame import DebugFrame
from carla_eval.backend import TickInfo
from carla_eval.projection import PinholeCamera, rotation_matrix
from carla_eval.run_config import VideoConfig
from carla_eval.video import FrameState, VideoRecorder, probe_video, render_frame

BEV = {"type": "sensor.camera.rgb", "id": "bev", "x": 8.0, "y": 0.0, "z": 20.0, "roll": 0.0, "pitch": -90.0,
       "yaw": 0.0, "width": 128, "height": 128, "fov": 90.0}


def test_rotation_is_orthonormal():
    for angles in [(0, 0, 0), (10, -90, 30), (5, 20, -60)]:
        r = rotation_matrix(*angles)
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)


def test_top_down_camera_projection():
    cam = PinholeCamera.from_spec(BEV)
    assert cam.focal == pytest.approx(64.0)
    uv, valid = cam.project(np.array([[8.0, 0.0], [28.0, 0.0], [8.0, 10.0], [0.0, 0.0]]))
    assert valid.all()
    np.testing.assert_allclose(uv[0], [64, 64], atol=1e-9)  # under the camera: image centre
    np.testing.assert_allclose(uv[1], [64, 0], atol=1e-9)  # 20 m ahead of the camera: top edge
    np.testing.assert_allclose(uv[2], [96, 64], atol=1e-9)  # to the right: right of centre
    np.testing.assert_allclose(uv[3], [64, 64 + 64 * 8 / 20], atol=1e-9)  # the ego, below centre


def test_forward_cameras_projection():
    spec = {"x": 1.3, "y": 0.0, "z": 2.3, "roll": 0, "pitch": 0, "yaw": 0, "width": 200, "height": 100, "fov": 90}
    cam = PinholeCamera.from_spec(spec)
    uv, valid = cam.project(np.array([[11.3, 0.0], [-5.0, 0.0], [11.3, 5.0]]))
    np.testing.assert_allclose(uv[0], [100, 50 + 100 * 2.3 / 10], atol=1e-9)  # ground ahead: below the horizon
    assert not valid[1]  # behind the camera
    assert uv[2][0] > 100  # right of the centre line
    left = PinholeCamera.from_spec({**spec, "yaw": -60.0})
    d = 30.0
    uv, valid = left.project(np.array([[1.3 + d * math.cos(math.radians(60)), -d * math.sin(math.radians(60)), 2.3]]))
    assert valid[0]
    np.testing.assert_allclose(uv[0], [100, 50], atol=1e-6)  # on its optical axis


def test_camera_spec_without_size_is_refused():
    with pytest.raises(ValueError, match="width"):
        PinholeCamera.from_spec({"fov": 90})


def _frame(step):
    img = np.full((128, 128, 3), 50, dtype=np.uint8)
    traj = np.array([[2.0 * k, 0.1 * k * k] for k in range(1, 7)], dtype=np.float32)
    return DebugFrame(img, dict(BEV), traj, np.array([12.0, 1.0], np.float32), 4, 5.0, 0.4, 0.1, 0.0, {"ms": 3.0})


def _info(step, infraction=False):
    new = [("collisions_vehicle", "hit")] if infraction else []
    return TickInfo(step, step * 0.05, (0.0, 0.0), 0.0, 5.0, 0.4, 0.1, 0.0, step / 2, new)


def test_render_draws_plan_hud_and_flash():
    plain = render_frame(_frame(0), FrameState(_info(0)), min_height=256)
    flashing = render_frame(_frame(0), FrameState(_info(0), ["collisions_vehicle"]), min_height=256)
    assert plain.shape[0] % 2 == 0 and plain.shape[1] % 2 == 0 and plain.dtype == np.uint8
    assert plain.shape[0] > 256  # image scaled to >= 256 px plus the HUD
    green = (plain[..., 1] > 180) & (plain[..., 0] < 100)
    assert green.any()  # the trajectory is drawn
    assert tuple(flashing[2, 2]) != tuple(plain[2, 2])
    assert flashing[2, 2, 0] > 200 and flashing[2, 2, 1] < 80  # red border while flashing


def test_failure_video_keeps_the_last_seconds(tmp_path):
    cfg = VideoConfig(mode="failures", last_seconds=3.0, fps=10)
    rec = VideoRecorder(cfg)
    n_ticks = 100  # steps 0..99: every 2nd tick (50 frames) + the final odd tick
    for step in range(n_ticks):
        rec.add(_info(step, infraction=step == 90), _frame(step))
    data = rec.finish(keep=True)
    info = probe_video(data)
    assert info.frames == min(30, n_ticks // 2 + 1)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p" and info.fps == pytest.approx(10.0)
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    assert probe_video(path).frames == info.frames


def test_all_mode_streams_every_tick_at_20_fps():
    rec = VideoRecorder(VideoConfig(mode="all", fps=20))
    for step in range(37):
        rec.add(_info(step), _frame(step))
    info = probe_video(rec.finish(keep=True))
    assert info.frames == 37 and info.fps == pytest.approx(20.0)


def test_no_video_without_frames_or_when_not_kept():
    rec = VideoRecorder(VideoConfig(mode="failures"))
    for step in range(10):
        rec.add(_info(step), None)
    assert rec.finish(keep=True) is None
    rec = VideoRecorder(VideoConfig(mode="failures"))
    rec.add(_info(0), _frame(0))
    assert rec.finish(keep=False) is None
    with pytest.raises(ValueError):
        VideoRecorder(VideoConfig(mode="none"))
    with pytest.raises(ValueError):
        VideoConfig(fps=15)


def test_infraction_markers_flash_after_the_tick():
    from carla_eval.video import BLINK_TICKS, FLASH_SECONDS, FlashTracker

    tracker = FlashTracker()
    on = [bool(tracker.update(_info(step, infraction=step == 10))) for step in range(100)]
    assert not any(on[:10])
    assert all(on[10 : 10 + BLINK_TICKS]) and not any(on[10 + BLINK_TICKS : 10 + 2 * BLINK_TICKS])
    last = 10 + int(FLASH_SECONDS * 20)
    assert any(on[last - 2 * BLINK_TICKS : last]) and not any(on[last:])


def test_three_camera_frame_tiles_views_projects_into_front_and_shows_context():
    from agent.rigs import get_rig

    specs = {c.id: c.to_sensor() for c in get_rig("carla-3cam").cameras}
    views = {cid: np.full((160, 288, 3), 40 + 60 * k, np.uint8) for k, cid in enumerate(specs)}
    context = np.full((192, 192, 3), 200, np.uint8)
    traj = np.stack([np.arange(1, 7) * 4.0, np.zeros(6)], 1)  # straight ahead, 4 m per waypoint
    frame = DebugFrame(image=views["front"], camera=specs["front"], trajectory=traj, target_point=None, command=4,
                       speed=8.0, throttle=0.3, steer=0.0, brake=0.0, views=views)
    info = TickInfo(10, 0.5, (0.0, 0.0), 0.0, 8.0, 0.3, 0.0, 0.0, 1.0, [])
    out = render_frame(frame, FrameState(info, [], context))
    # Row of three cameras (864 x 160), the front camera x2 (576 x 320) + the context (320 x 320), HUD.
    assert out.shape[1] == 576 + 320 and out.shape[0] >= 160 + 320
    for k, cid in enumerate(specs):
        assert (out[80, k * 288 + 144] == views[cid][0, 0]).all()
    assert (out[160 + 160, 576 + 160] == 200).all()  # the context view beside the large front image
    # The plan 4-24 m ahead is drawn in green on the large front image, under the horizon.
    cam = PinholeCamera.from_spec(specs["front"])
    uv, _ = cam.project(traj[2:3])
    u, v = (uv[0] * 2).round().astype(int)
    patch = out[160 + v - 2 : 160 + v + 3, u - 2 : u + 3].reshape(-1, 3)
    assert ((patch[:, 1] > 180) & (patch[:, 0] < 100)).any()
