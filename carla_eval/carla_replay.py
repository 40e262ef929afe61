"""``carla-eval replay RUN --route N`` for CARLA runs: replay the route's recorder file in a server.

A CARLA run made with ``--record`` keeps one CARLA recorder file per route
(``RUN_DIR/recordings/<record id>.log``, named in the record's ``recording`` field). The replay:

1. starts a server as the leaderboard mode does (``CarlaUE4.sh -RenderOffScreen -nosound
   -carla-rpc-port=P -carla-streaming-port=P+1 -graphicsadapter=G``, in its own session, tagged
   and recorded by process group: :mod:`carla_eval.supervisor`) and waits until it answers
   ``get_server_version()``;
2. runs a client with the run's evaluator Python (which has ``carla``): ``show_recorder_file_info``
   for the map and duration, ``load_world``, synchronous mode at ``fps``, ``replay_file(log, 0, 0,
   0)``, finds the hero (``role_name == "hero"``), attaches the rig's cameras to it (the agent
   config's ``rig``, agent/rigs.py), ticks through the recording and writes, per tick, the camera
   images (raw BGRA) and the hero's speed and controls;
3. stops the server by its process group and renders the video as the sandbox replay does (the
   rig's first camera, scaled up, with the HUD: time, speed, throttle / brake / steer). CARLA runs
   have no per-tick plans, route completion or infraction ticks, so no trajectory is drawn, RC
   reads "nan" and no infraction flashes: that is what the data allows.

Everything but the client's CARLA calls is exercised by the tests with stand-ins; the client needs a
real server and a real recorder file (docs/leaderboard.md).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from carla_eval.carla_backend import (
    CarlaServerConfig,
    EvaluatorConfig,
    ManagedProcess,
    evaluator_env,
    find_free_ports,
    probe_command,
    server_command,
)
from carla_eval.supervisor import ProcessGroupRegistry, new_tag

REPLAY_CLIENT = r'''
import json, math, os, sys, time
import carla
host, port, recording, frames_dir, cameras_json, fps, timeout = sys.argv[1:8]
cameras = json.loads(cameras_json)
fps = int(fps)
client = carla.Client(host, int(port))
client.set_timeout(float(timeout))
info = client.show_recorder_file_info(recording, False)
town = duration = None
for line in info.splitlines():
    if line.startswith("Map:"):
        town = line.split(":", 1)[1].strip()
    elif line.startswith("Duration:"):
        duration = float(line.split(":", 1)[1].split()[0])
if town is None or duration is None:
    sys.exit("not a CARLA recorder file (no Map / Duration): " + recording)
world = client.load_world(town)
settings = world.get_settings()
settings.synchronous_mode = True
settings.fixed_delta_seconds = 1.0 / fps
world.apply_settings(settings)
client.replay_file(recording, 0.0, 0.0, 0, False)
world.tick()
hero = None
for _ in range(100):
    for actor in world.get_actors().filter("vehicle.*"):
        if actor.attributes.get("role_name") == "hero":
            hero = actor
    if hero is not None:
        break
    world.tick()
if hero is None:
    sys.exit("no hero vehicle (role_name 'hero') in the replay of " + recording)
library = world.get_blueprint_library()
latest = {}
sensors = []
for cam in cameras:
    bp = library.find("sensor.camera.rgb")
    bp.set_attribute("image_size_x", str(cam["width"]))
    bp.set_attribute("image_size_y", str(cam["height"]))
    bp.set_attribute("fov", str(cam["fov"]))
    transform = carla.Transform(carla.Location(x=cam["x"], y=cam["y"], z=cam["z"]),
                                carla.Rotation(pitch=cam["pitch"], yaw=cam["yaw"], roll=cam["roll"]))
    sensor = world.spawn_actor(bp, transform, attach_to=hero)
    sensor.listen(lambda image, cid=cam["id"]: latest.__setitem__(cid, image))
    sensors.append(sensor)
log = open(os.path.join(frames_dir, "frames.jsonl"), "w")
try:
    for k in range(int(duration * fps)):
        frame = world.tick()
        deadline = time.time() + 5.0
        while time.time() < deadline and any(c["id"] not in latest or latest[c["id"]].frame < frame for c in cameras):
            time.sleep(0.002)
        images = {}
        for cam in cameras:
            image = latest.get(cam["id"])
            if image is None:
                continue
            name = "%06d_%s.bgra" % (k, cam["id"])
            with open(os.path.join(frames_dir, name), "wb") as f:
                f.write(bytes(image.raw_data))
            images[cam["id"]] = [name, image.width, image.height]
        v = hero.get_velocity()
        c = hero.get_control()
        t = world.get_snapshot().timestamp.elapsed_seconds
        log.write(json.dumps({"step": k, "t": t, "speed": math.sqrt(v.x * v.x + v.y * v.y + v.z * v.z),
                              "throttle": c.throttle, "steer": c.steer, "brake": c.brake, "images": images}) + "\n")
finally:
    log.close()
    for sensor in sensors:
        sensor.stop()
        sensor.destroy()
    settings.synchronous_mode = False
    settings.fixed_delta_seconds = None
    world.apply_settings(settings)
'''


class CarlaReplayError(RuntimeError):
    """The CARLA replay cannot run (no recording, no server, client failure)."""


@dataclass(frozen=True)
class CarlaReplayConfig:
    """Server and client settings of a replay (from the run's CARLA backend options)."""

    carla_root: Path
    python: str = sys.executable
    gpu: int = 0
    rpc_base: int = 2000
    tm_base: int = 8000
    port_stride: int = 10
    slot: int = 0
    startup_timeout_s: float = 120.0
    probe_timeout_s: float = 10.0
    client_timeout_s: float = 60.0
    replay_timeout_s: float = 3600.0
    stop_grace_s: float = 10.0
    extra_server_args: tuple[str, ...] = ()
    extra_pythonpath: tuple[str, ...] = ()

    @classmethod
    def from_backend_options(cls, options: Mapping[str, Any], **overrides: Any) -> "CarlaReplayConfig":
        keys = ("python", "gpu", "rpc_base", "tm_base", "port_stride", "startup_timeout_s", "probe_timeout_s", "stop_grace_s")
        kwargs: dict[str, Any] = {k: options[k] for k in keys if k in options}
        if "carla_root" not in options:
            raise CarlaReplayError("the run's backend options name no carla_root")
        kwargs["carla_root"] = Path(options["carla_root"])
        kwargs["extra_server_args"] = tuple(options.get("extra_server_args", ()))
        kwargs["extra_pythonpath"] = tuple(options.get("extra_pythonpath", ()))
        kwargs.update(overrides)
        return cls(**kwargs)


def replay_client_command(cfg: CarlaReplayConfig, port: int, recording: Path, frames_dir: Path,
                          cameras: list[dict[str, Any]], fps: int) -> list[str]:
    return [cfg.python, "-c", REPLAY_CLIENT, "127.0.0.1", str(port), str(recording), str(frames_dir),
            json.dumps(cameras), str(int(fps)), f"{cfg.client_timeout_s:g}"]


@dataclass
class CarlaReplayResult:
    record_id: str
    recording: Path
    ticks: int
    video: Path | None
    frames_dir: Path
    server_command: list[str]
    client_command: list[str]


def _client_env(cfg: CarlaReplayConfig) -> dict[str, str]:
    ev = EvaluatorConfig(Path("."), Path("."), cfg.carla_root, cfg.python, extra_pythonpath=cfg.extra_pythonpath)
    return evaluator_env(ev, os.environ, cuda_device=None)


def run_replay_client(cfg: CarlaReplayConfig, recording: Path, frames_dir: Path, cameras: list[dict[str, Any]],
                      fps: int, work_dir: Path) -> tuple[list[str], list[str]]:
    """Steps 1-2 of the module docstring; returns (server command, client command)."""
    registry = ProcessGroupRegistry(new_tag("replay"), work_dir / "process_groups.jsonl", grace_s=cfg.stop_grace_s)
    try:
        ports = find_free_ports(cfg.slot, cfg.rpc_base, cfg.tm_base, cfg.port_stride)
        server_cmd = server_command(CarlaServerConfig(cfg.carla_root, cfg.gpu, cfg.extra_server_args), ports)
        server = ManagedProcess(server_cmd, log_path=work_dir / "carla_server.log", registry=registry, what="replay server")
        server.start()
        env = _client_env(cfg)
        deadline = time.monotonic() + cfg.startup_timeout_s
        ready = False
        while time.monotonic() < deadline and server.running() and not ready:
            probe = subprocess.run(probe_command(cfg.python, "127.0.0.1", ports.rpc, cfg.probe_timeout_s), env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=cfg.probe_timeout_s + 10,
                                   check=False)
            ready = probe.returncode == 0
            if not ready:
                time.sleep(0.5)
        if not ready:
            raise CarlaReplayError(f"the replay server on port {ports.rpc} did not answer within {cfg.startup_timeout_s} s")
        client_cmd = replay_client_command(cfg, ports.rpc, recording, frames_dir, cameras, fps)
        client = ManagedProcess(client_cmd, env, log_path=work_dir / "replay_client.log", registry=registry,
                                what="replay client")
        client.start()
        code = client.wait(cfg.replay_timeout_s)
        if code is None:
            client.stop(cfg.stop_grace_s)
            raise CarlaReplayError(f"the replay client ran past {cfg.replay_timeout_s} s")
        if code != 0:
            tail = (work_dir / "replay_client.log").read_text(errors="replace")[-2000:]
            raise CarlaReplayError(f"the replay client failed (exit {code}):\n{tail}")
        return server_cmd, client_cmd
    finally:
        registry.close()


def render_replay_video(frames_dir: Path, camera: Mapping[str, Any], out_video: Path, fps: int,
                        min_height: int = 384) -> int:
    """Frames written by the client -> MP4 at ``out_video`` (atomic); returns the number of frames."""
    from agent.debug_frame import DebugFrame
    from carla_eval.atomic_io import atomic_write_bytes
    from carla_eval.backend import TickInfo
    from carla_eval.video import FrameState, encode_mp4, render_frame

    lines = [json.loads(line) for line in (frames_dir / "frames.jsonl").read_text().splitlines() if line.strip()]
    frames = []
    for entry in lines:
        item = entry["images"].get(camera["id"])
        if item is None:
            continue
        name, w, h = item
        bgra = np.frombuffer((frames_dir / name).read_bytes(), dtype=np.uint8).reshape(int(h), int(w), 4)
        rgb = np.ascontiguousarray(bgra[:, :, 2::-1])
        frame = DebugFrame(rgb, dict(camera), np.zeros((0, 2), np.float32), None, -1, float(entry["speed"]),
                           float(entry["throttle"]), float(entry["steer"]), float(entry["brake"]))
        info = TickInfo(int(entry["step"]), float(entry["t"]), (0.0, 0.0), 0.0, float(entry["speed"]),
                        float(entry["throttle"]), float(entry["steer"]), float(entry["brake"]), math.nan)
        frames.append(render_frame(frame, FrameState(info), min_height))
    data = encode_mp4(frames, fps)
    if data is None:
        raise CarlaReplayError(f"the replay wrote no image of camera {camera['id']!r} in {frames_dir}")
    atomic_write_bytes(out_video, data)
    return len(frames)


def rig_cameras(agent_config: str | None, rig: str | None = None) -> list[dict[str, Any]]:
    """Camera specs of the run's rig: ``rig``, else the agent config's ``rig`` key (agent/rigs.py)."""
    from agent.rigs import get_rig

    name = rig
    if name is None and agent_config and Path(agent_config).is_file():
        import yaml

        data = yaml.safe_load(Path(agent_config).read_text(encoding="utf-8")) or {}
        name = data.get("rig") if isinstance(data, dict) else None
    if name is None:
        raise CarlaReplayError("cannot tell the run's sensor rig (no agent config with a 'rig'): pass --rig")
    return [cam.to_sensor() for cam in get_rig(str(name)).cameras]


def replay_carla_record(run_dir: Path, record: Mapping[str, Any], options: Mapping[str, Any], agent_config: str | None,
                        out_video: Path | None, frames_dir: Path | None = None, fps: int = 20, rig: str | None = None,
                        **overrides: Any) -> CarlaReplayResult:
    """The whole replay of one record of a CARLA run (see the module docstring)."""
    rid = str(record["route_id"])
    recording = record.get("recording")
    if not recording:
        raise CarlaReplayError(f"{rid} has no recording: run with --record to keep CARLA recorder files")
    recording_path = Path(recording)
    if not recording_path.is_absolute():
        recording_path = run_dir / recording_path
    if not recording_path.is_file():
        raise CarlaReplayError(f"{rid}: recorder file {recording_path} is missing")
    cfg = CarlaReplayConfig.from_backend_options(options, **overrides)
    cameras = rig_cameras(agent_config, rig)
    work = run_dir / "replays" / f"{rid}_carla"
    frames = Path(frames_dir) if frames_dir is not None else work / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    server_cmd, client_cmd = run_replay_client(cfg, recording_path.resolve(), frames.resolve(), cameras, fps, work)
    ticks = sum(1 for line in (frames / "frames.jsonl").read_text().splitlines() if line.strip())
    video = None
    if out_video is not None:
        render_replay_video(frames, cameras[0], Path(out_video), fps)
        video = Path(out_video)
    return CarlaReplayResult(rid, recording_path, ticks, video, frames, server_cmd, client_cmd)

