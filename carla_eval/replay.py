"""``carla-eval replay``: re-run one recorded route from its seed and controls, without the model.

A :class:`ReplayAgent` declares the recorded agent's sensors and returns, tick by tick, the
controls stored in ``RUN_DIR/traces/<save_name>.npz``; the backend (sandbox) runs the route with
the recorded seed, so the ego track must come out identical. The replay compares the replayed
ego positions with the recorded ones (max deviation in metres) and re-renders the video from the
new camera images with the recorded plans drawn in, or dumps the frames as PNG files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.debug_frame import DebugFrame
from carla_eval.backend_factory import create_backend
from carla_eval.manifest import RunManifest
from carla_eval.results import RESULTS_FILENAME, parse_record_id, read_results_file
from carla_eval.routes import parse_routes_file, routes_fingerprint
from carla_eval.run_config import BackendSpec, VideoConfig
from carla_eval.traces import StoredTrace, load_trace
from carla_eval.vehicle_control import make_control
from carla_eval.video import FlashTracker, FrameState, VideoRecorder, render_frame

REPLAY_TOLERANCE_M = 1e-6


class ReplayError(RuntimeError):
    """The route cannot be replayed (unknown route, no trace, backend without replays, changed routes)."""


class ReplayAgent:
    """Plays back recorded controls; exposes the recorded plan as debug frames."""

    def __init__(self, stored: StoredTrace) -> None:
        self.stored = stored
        self.step = 0
        self.overrun = 0  # ticks asked beyond the recording (the replay diverged)
        self._debug = False
        self._frame: DebugFrame | None = None
        self._camera = next((s for s in stored.sensors if s.get("type") == "sensor.camera.rgb"), None)

    def set_global_plan(self, global_plan_gps: list, global_plan_world_coord: list) -> None:
        pass

    def setup(self, path_to_conf_file: str) -> None:
        pass

    def sensors(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.stored.sensors]

    def enable_debug_frames(self, enabled: bool) -> None:
        self._debug = bool(enabled)

    def get_debug_frame(self) -> DebugFrame | None:
        return self._frame if self._debug else None

    def __call__(self, input_data: dict, timestamp: float) -> Any:
        return self.run_step(input_data, timestamp)

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        controls = self.stored.trace.controls
        i = self.step
        self.step += 1
        if i < len(controls):
            throttle, steer, brake = (float(v) for v in controls[i])
        else:
            self.overrun += 1
            throttle, steer, brake = 0.0, 0.0, 1.0
        if self._debug and self._camera is not None and self._camera.get("id") in input_data:
            bgra = np.asarray(input_data[self._camera["id"]][1])
            plans = self.stored.plans
            traj = np.zeros((0, 2), np.float32)
            target = None
            command = -1
            if plans is not None and i < len(plans.trajectory):
                row = plans.trajectory[i]
                traj = row[~np.isnan(row).any(axis=1)]
                tgt = plans.target_point[i]
                target = None if np.isnan(tgt).any() else tgt
                command = int(plans.command[i])
            speed = 0.0
            if i > 0 and i - 1 < len(self.stored.trace.ego):
                speed = float(self.stored.trace.ego[i - 1][3])
            self._frame = DebugFrame(
                image=np.ascontiguousarray(bgra[:, :, 2::-1]), camera=dict(self._camera), trajectory=traj,
                target_point=target, command=command, speed=speed, throttle=throttle, steer=steer, brake=brake,
                extras={"replay_tick": float(i)},
            )
        return make_control(throttle, steer, brake)

    def destroy(self) -> None:
        pass


@dataclass
class ReplayResult:
    record_id: str
    ticks_recorded: int
    ticks_replayed: int
    max_deviation_m: float
    video: Path | None
    frames_dir: Path | None
    frames_written: int

    @property
    def reproduced(self) -> bool:
        return self.ticks_recorded == self.ticks_replayed and self.max_deviation_m <= REPLAY_TOLERANCE_M


def find_record(run_dir: Path, route: str, repetition: int | None) -> dict[str, Any]:
    """The record named by a route id (with ``repetition``, default 0), a record id or a save_name."""
    records = read_results_file(run_dir / RESULTS_FILENAME)["_checkpoint"]["records"]
    for rec in records:
        if route in (rec["route_id"], rec.get("save_name")):
            return rec
    rep = 0 if repetition is None else repetition
    for rec in records:
        rid, k = parse_record_id(rec["route_id"])
        if rid == route and k == rep:
            return rec
    raise ReplayError(f"{run_dir} has no record for route {route!r} (repetition {rep})")


def replay_route(
    run_dir: str | Path,
    route: str,
    repetition: int | None = None,
    out_video: str | Path | None = None,
    frames_dir: str | Path | None = None,
    fps: int = 20,
) -> ReplayResult:
    run_dir = Path(run_dir)
    manifest = RunManifest.load(run_dir)
    backend_name = manifest.identity["backend"]
    if backend_name == "carla":
        raise ReplayError("CARLA runs are replayed with CARLA's recorder (leaderboard --record), not here")
    record = find_record(run_dir, route, repetition)
    rid = record["route_id"]
    trace_path = run_dir / "traces" / f"{record['save_name']}.npz"
    if not trace_path.is_file():
        raise ReplayError(f"no trace for {rid} at {trace_path} (the route never ran, or traces were off)")
    stored = load_trace(trace_path)
    routes_file = manifest.identity["routes_file"]
    if not Path(routes_file).is_file() or routes_fingerprint(routes_file) != manifest.identity["routes_fingerprint"]:
        raise ReplayError(f"the run's route file {routes_file} is missing or changed since the run")
    route_id, rep = parse_record_id(rid)
    matches = [r for r in parse_routes_file(routes_file) if r.route_id == route_id]
    if not matches:
        raise ReplayError(f"route {route_id} is not in {routes_file}")
    backend = create_backend(BackendSpec(backend_name, dict(manifest.identity.get("backend_options", {}))))
    agent = ReplayAgent(stored)
    want_frames = out_video is not None or frames_dir is not None
    agent.enable_debug_frames(want_frames)
    recorder = VideoRecorder(VideoConfig(mode="all", fps=fps)) if out_video is not None else None
    frames_path = Path(frames_dir) if frames_dir is not None else None
    if frames_path is not None:
        frames_path.mkdir(parents=True, exist_ok=True)
    written = [0]
    stride = max(1, int(round(20 / fps)))
    flash = FlashTracker()

    def on_tick(info: Any) -> None:
        frame = agent.get_debug_frame()
        if recorder is not None:
            recorder.add(info, frame)
        flashing = flash.update(info)
        if frames_path is not None and frame is not None and info.step % stride == 0:
            rgb = render_frame(frame, FrameState(info, flashing))
            cv2.imwrite(str(frames_path / f"frame_{info.step:06d}.png"), rgb[:, :, ::-1])
            written[0] += 1

    try:
        outcome = backend.run_route(matches[0], agent, manifest.identity.get("agent_config", ""), repetition=rep,
                                    seed=stored.trace.seed, on_tick=on_tick if want_frames else None)
    finally:
        backend.close()
    if outcome.trace is None:
        raise ReplayError(f"the backend returned no trace when replaying {rid}: {outcome.status} {outcome.error or ''}")
    recorded = np.asarray(stored.trace.ego)[:, :2]
    replayed = np.asarray(outcome.trace.ego)[:, :2]
    n = min(len(recorded), len(replayed))
    deviation = float(np.max(np.linalg.norm(recorded[:n] - replayed[:n], axis=1))) if n else 0.0
    if len(recorded) != len(replayed):
        deviation = max(deviation, math.inf)
    video_path = None
    if recorder is not None:
        data = recorder.finish(keep=True)
        if data:
            from carla_eval.atomic_io import atomic_write_bytes

            video_path = Path(out_video)
            atomic_write_bytes(video_path, data)
    return ReplayResult(rid, len(recorded), len(replayed), deviation, video_path, frames_path, written[0])
