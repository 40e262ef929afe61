"""Drive the privileged expert over routes, perturb its controls, record episodes.

One *job* = one (routes file, route, repetition) run with one seed. A job builds the backend's
expert, wraps it in a :class:`RecordingAgent` and calls ``backend.run_route`` (the same evaluator
side of the leaderboard contract that evaluation uses). Per tick the wrapper:

1. lets the expert act (its plan is made from the TRUE state: this plan is the label of record);
2. decodes ``input_data`` with the agent's own decoder and route planner (``agent.sensor_io``,
   ``agent.route_planner``), so speed, acceleration, command and target point are exactly what the
   IK agent will see at run time;
3. reads the simulator's ground truth from the expert (ego pose, other vehicles' boxes);
4. applies a perturbation to the control when a perturbation segment is active
   (:class:`NoiseConfig`), so the data holds recovery situations, and returns it;
5. on-policy (:class:`OnPolicyConfig`, DAgger): also runs a student agent, whose control replaces
   the expert's in the windows the student drives (:class:`DriverSchedule`); the expert's plan from
   the state the student reached is the label, and the episode records who drove.

With ``camera_shift`` some episodes mount the cameras on a shifted virtual ego and record their
labels in its frame (``training.camera_shift``).

Episodes are written atomically; jobs whose episode already exists and verifies are skipped, so an
interrupted collection resumes. Jobs run in a loop, or in ``workers`` processes (each owning its
own simulator), and the manifest is written at the end.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from training.camera_shift import CameraShiftConfig, RigShift, shift_labels
from training.episodes import EpisodeError, file_sha256, read_episode, write_episode
from training.manifest import MANIFEST_NAME, build_manifest, write_json_atomic
from training.recording import EpisodeRecorder, RecorderConfig, TickRecord

logger = logging.getLogger("training.collection")

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class NoiseConfig:
    """Control perturbation segments (for recovery data).

    Outside a segment, a new one starts with probability ``rate_hz * dt`` per tick (not during the
    first ``warmup_s``). A segment lasts U[``min_duration_s``, ``max_duration_s``] and adds a steer
    offset of magnitude U[``steer_min``, ``steer_max``] with a random sign; with probability
    ``longitudinal_prob`` it instead overrides throttle / brake (full throttle ``throttle`` or
    brake ``brake``, half each). ``rate_hz = 0`` disables perturbations.
    """

    rate_hz: float = 0.08
    min_duration_s: float = 0.4
    max_duration_s: float = 1.2
    steer_min: float = 0.08
    steer_max: float = 0.25
    longitudinal_prob: float = 0.3
    throttle: float = 0.7
    brake: float = 0.6
    warmup_s: float = 2.0

    def __post_init__(self) -> None:
        if self.rate_hz < 0 or self.min_duration_s <= 0 or self.max_duration_s < self.min_duration_s:
            raise ValueError(f"noise: invalid rate / durations {self}")
        if not 0 <= self.steer_min <= self.steer_max <= 1 or not 0 <= self.longitudinal_prob <= 1:
            raise ValueError(f"noise: steer / longitudinal_prob out of range {self}")

    @classmethod
    def parse(cls, text: str) -> "NoiseConfig":
        """``none`` | ``default`` | ``key=value,...`` (keys: the fields; ``duration=a-b``)."""
        text = text.strip()
        if text == "none":
            return cls(rate_hz=0.0)
        if text in ("", "default"):
            return cls()
        kwargs: dict[str, float] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"--noise: expected key=value, got {part!r}")
            if key == "duration":
                lo, _, hi = value.partition("-")
                kwargs["min_duration_s"], kwargs["max_duration_s"] = float(lo), float(hi or lo)
            elif key == "rate":
                kwargs["rate_hz"] = float(value)
            elif key == "steer":
                kwargs["steer_max"] = float(value)
            elif key in cls.__dataclass_fields__:
                kwargs[key] = float(value)
            else:
                raise ValueError(f"--noise: unknown key {key!r} (known: rate, duration, steer, {sorted(cls.__dataclass_fields__)})")
        return cls(**kwargs)


class Perturber:
    """Stateful perturbation of controls per :class:`NoiseConfig` (deterministic in its seed)."""

    def __init__(self, cfg: NoiseConfig, seed: int, dt: float) -> None:
        self.cfg, self.dt = cfg, dt
        self.rng = np.random.default_rng(seed)
        self.remaining = 0
        self.kind = ""
        self.value = 0.0
        self.segments = 0

    def step(self, tick: int, throttle: float, steer: float, brake: float) -> tuple[float, float, float, bool]:
        """(throttle, steer, brake, perturbed) for this tick."""
        c = self.cfg
        if self.remaining == 0 and c.rate_hz > 0 and tick * self.dt >= c.warmup_s and self.rng.random() < c.rate_hz * self.dt:
            self.remaining = max(1, int(round(self.rng.uniform(c.min_duration_s, c.max_duration_s) / self.dt)))
            self.segments += 1
            if self.rng.random() < c.longitudinal_prob:
                self.kind = "throttle" if self.rng.random() < 0.5 else "brake"
            else:
                self.kind = "steer"
                self.value = float(self.rng.uniform(c.steer_min, c.steer_max) * self.rng.choice([-1.0, 1.0]))
        if self.remaining == 0:
            return throttle, steer, brake, False
        self.remaining -= 1
        if self.kind == "steer":
            return throttle, float(np.clip(steer + self.value, -1.0, 1.0)), brake, True
        if self.kind == "throttle":
            return c.throttle, steer, 0.0, True
        return 0.0, steer, c.brake, True


@dataclass(frozen=True)
class OnPolicyConfig:
    """On-policy collection (DAgger): a student agent drives, the expert labels every state.

    ``agent``: the student's leaderboard agent file (``get_entry_point()``), built like the
    evaluator builds agents; ``config``: passed to its ``setup()`` (its agent YAML). Time is cut into
    windows of ``window_s``; in each, the expert's control (with the noise perturbations) is applied
    with probability ``beta`` and the student's otherwise. Both are called at every tick, so each
    keeps its own state (controllers, route planner) whoever drives; the expert's plan from the true
    state stays the label of record.
    """

    agent: str
    config: str = ""
    beta: float = 0.0
    window_s: float = 1.0

    def __post_init__(self) -> None:
        if not str(self.agent).endswith(".py"):
            raise ValueError(f"--policy must be a leaderboard agent .py file, got {self.agent!r}")
        if not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"--beta is the probability that the expert drives, in [0, 1]; got {self.beta}")
        if not float(self.window_s) > 0:
            raise ValueError(f"--beta-window must be > 0 s, got {self.window_s}")

    def to_meta(self) -> dict[str, Any]:
        """What an episode records of it (``EpisodeMeta.policy``)."""
        return {"agent": str(self.agent), "config": str(self.config), "beta": float(self.beta),
                "window_s": float(self.window_s)}


class DriverSchedule:
    """Who drives each tick: the expert with probability ``beta`` per window of ``window_s``
    (deterministic in its seed, drawn independently of the perturbations)."""

    def __init__(self, beta: float, window_s: float, seed: int, dt: float) -> None:
        self.beta = float(beta)
        self.window_ticks = max(1, int(round(window_s / dt)))
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
        self.expert_drives = True
        self.student_ticks = 0

    def student_drives(self, tick: int) -> bool:
        """Whether the student's control is applied at ``tick`` (ticks come 0, 1, 2, ...)."""
        if tick % self.window_ticks == 0:
            self.expert_drives = bool(self.rng.random() < self.beta)
        if not self.expert_drives:
            self.student_ticks += 1
        return not self.expert_drives


@dataclass(frozen=True)
class CollectConfig:
    """A collection run. ``seed``: base seed; job ``i`` (in file / route / repetition order) runs with
    seed ``seed + 1000 * i`` (traffic and perturbations). ``max_ticks``: stop recording a route after
    this many ticks (None: run it to its end). ``agent_config``: the agent YAML whose decoding
    settings (rig, geo-reference, acceleration source, route planner) the recorded inputs follow
    (None: the agent's defaults); it must match the agent config used at run time.
    ``expert_config``: passed to the expert's ``setup``. ``route_ids``: only these routes.
    ``policy``: on-policy collection with a student (None: the expert drives every tick).
    ``camera_shift``: shift some episodes' camera rig and their labels (``training.camera_shift``)."""

    routes: tuple[str, ...]
    out: str
    backend: str = "sandbox"
    backend_options: dict[str, Any] = field(default_factory=dict)
    repetitions: int = 1
    seed: int = 0
    workers: int = 1
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    agent_config: str | None = None
    expert_config: str = ""
    max_ticks: int | None = None
    route_ids: tuple[str, ...] | None = None
    policy: OnPolicyConfig | None = None
    camera_shift: CameraShiftConfig = field(default_factory=CameraShiftConfig)

    def __post_init__(self) -> None:
        if self.policy is not None and self.camera_shift.enabled:
            raise ValueError("camera shift and on-policy collection do not combine: the student must see "
                             "the cameras it is mounted with")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["routes"] = list(self.routes)
        d["recorder"]["cameras"] = list(self.recorder.cameras)
        if self.route_ids is not None:
            d["route_ids"] = list(self.route_ids)
        return d


@dataclass(frozen=True)
class Job:
    """One route run to record."""

    routes_file: str
    route_index: int
    route_id: str
    repetition: int
    seed: int

    @property
    def file_name(self) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.route_id)
        return f"{Path(self.routes_file).stem}_r{safe}_rep{self.repetition}.npz"


def plan_jobs(cfg: CollectConfig) -> list[Job]:
    """Every job of ``cfg`` in a fixed order (routes files, routes, repetitions)."""
    from carla_eval.routes import parse_routes_file

    jobs: list[Job] = []
    wanted = set(cfg.route_ids) if cfg.route_ids is not None else None
    for routes_file in cfg.routes:
        for route in parse_routes_file(routes_file):
            if wanted is not None and route.route_id not in wanted:
                continue
            for rep in range(cfg.repetitions):
                jobs.append(Job(str(routes_file), route.index, route.route_id, rep, cfg.seed + 1000 * len(jobs)))
    return jobs


@dataclass(frozen=True)
class DecodeSettings:
    """How the agent turns ``input_data`` into model inputs (from its agent config)."""

    rig: str = "sandbox-bev"
    lat_ref: float = 0.0
    lon_ref: float = 0.0
    acceleration_source: str = "imu"
    max_abs_acceleration: float = 15.0
    route_reach_radius_m: float = 4.0
    route_min_spacing_m: float = 50.0
    route_lane_change_hold_m: float = 10.0

    @classmethod
    def from_agent_config(cls, path: str | None) -> "DecodeSettings":
        """Settings of an agent YAML (``agent.agent_config``); defaults when ``path`` is None."""
        from agent.agent_config import agent_config_from_dict, load_agent_config

        a = load_agent_config(path) if path else agent_config_from_dict({"model": "."})
        # collection runs on the sandbox, whose geo-reference is (0, 0); None means "solve from the plan"
        lat_ref, lon_ref = (0.0, 0.0) if a.lat_ref is None else (a.lat_ref, a.lon_ref)
        return cls(a.rig, lat_ref, lon_ref, a.acceleration_source, a.max_abs_acceleration,
                   a.route.reach_radius_m, a.route.min_spacing_m, a.route.lane_change_hold_m)


def merge_sensors(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union of two ``sensors()`` lists by id; the same id with a different spec is an error."""
    out = [dict(s) for s in first]
    by_id = {s["id"]: s for s in out}
    for spec in second:
        sid = spec["id"]
        if sid in by_id:
            a = {k: v for k, v in by_id[sid].items() if k not in ("sensor_tick", "reading_frequency")}
            b = {k: v for k, v in spec.items() if k not in ("sensor_tick", "reading_frequency")}
            if a != b:
                raise ValueError(f"sensor id {sid!r} is requested by the expert and the rig with different specs: {a} vs {b}")
            continue
        out.append(dict(spec))
        by_id[sid] = out[-1]
    return out


class RecordingLimitReached(RuntimeError):
    """Raised from the recording agent once ``max_ticks`` ticks are recorded (ends the route)."""


def sandbox_ground_truth(backend: Any) -> tuple[tuple[float, float, float], np.ndarray] | None:
    """(ego world x, y, yaw) and other vehicles' boxes [M, 5] of the route the backend is running,
    read from the sandbox's ``backend.session`` (None for a backend without one)."""
    session = getattr(backend, "session", None)
    if session is None:
        return None
    world = session.world
    st = world.ego.state
    others = [b for b in world.boxes() if b.actor_id != world.ego.actor_id]
    boxes = np.array([[b.x, b.y, b.yaw, b.length, b.width] for b in others], dtype=np.float32).reshape(-1, 5)
    return (float(st.x), float(st.y), float(st.yaw)), boxes


def sandbox_camera_truth(backend: Any, size: tuple[int, int]) -> dict[str, dict[str, np.ndarray]]:
    """Depth (metres) and semantic tags of every perspective camera at this tick, resized (nearest)
    to ``size`` (H, W): ``{"depth": {id: [H, W] float32}, "semantic": {id: [H, W] uint8}}``, read
    from the sandbox's ``backend.session.sensors.ground_truth`` (rendered with the tick's images)."""
    import cv2

    from carla_eval.sandbox.camera.renderer import decode_carla_depth

    session = getattr(backend, "session", None)
    suite = getattr(session, "sensors", None)
    truth = getattr(suite, "ground_truth", None)
    if not truth:
        raise RuntimeError("the backend renders no camera ground truth (sandbox option camera_ground_truth)")
    h, w = size

    def fit(a: np.ndarray) -> np.ndarray:
        return a if a.shape[:2] == (h, w) else cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST)

    return {
        "depth": {cam: fit(decode_carla_depth(img).astype(np.float32)) for cam, img in truth["depth"].items()},
        "semantic": {cam: fit(np.ascontiguousarray(img[..., 2])) for cam, img in truth["semantic"].items()},
    }


class RecordingAgent:
    """Wraps the privileged expert for collection (see the module doc); leaderboard contract.

    Args:
        expert: the backend's expert agent; ``plan_of(expert)`` must give its current plan [T, 2]
            (ego frame, 2 Hz) after each call.
        ground_truth: callable returning ((x, y, yaw), boxes [M, 5]) of the running route, or None
            (then the decoded GNSS / compass pose is used and no boxes are recorded).
        recorder, perturber: where ticks go, and how controls are perturbed.
        decode: the agent's decoding settings.
        max_ticks: stop (raise :class:`RecordingLimitReached`) after this many ticks.
        camera_truth: callable ``(H, W) -> {"depth": {id: metres}, "semantic": {id: tags}}`` of the
            tick's cameras, needed when the recorder stores ground truth.
        student, student_config, drivers: on-policy collection: the student agent (leaderboard
            contract), the file its ``setup`` gets, and who drives each tick (:class:`DriverSchedule`).
        rig_shift: mount the rig's cameras on this shifted virtual ego (``training.camera_shift``).
    """

    def __init__(self, expert: Any, plan_of: Callable[[Any], np.ndarray], ground_truth: Callable[[], Any],
                 recorder: EpisodeRecorder, perturber: Perturber, decode: DecodeSettings, max_ticks: int | None = None,
                 camera_truth: Callable[[tuple[int, int]], dict[str, dict[str, np.ndarray]]] | None = None,
                 student: Any = None, student_config: str = "", drivers: DriverSchedule | None = None,
                 rig_shift: RigShift | None = None) -> None:
        from agent.rigs import get_rig

        self.rig_shift = rig_shift

        if (student is None) != (drivers is None):
            raise ValueError("on-policy recording needs both a student and a driver schedule")
        self.student, self.student_config, self.drivers = student, student_config, drivers
        self._call_student: Callable[[dict, float], Any] | None = None
        self.expert = expert
        self.plan_of = plan_of
        self.ground_truth = ground_truth
        self.recorder = recorder
        self.perturber = perturber
        self.decode = decode
        self.max_ticks = max_ticks
        self.camera_truth = camera_truth
        if recorder.config.ground_truth and camera_truth is None:
            raise ValueError("the recorder stores camera ground truth but no camera_truth source was given")
        self.rig = get_rig(decode.rig)
        missing = [c for c in recorder.config.cameras if c not in self.rig.camera_ids]
        if missing:
            raise ValueError(f"recorder cameras {missing} are not cameras of rig {self.rig.name} {self.rig.camera_ids}")
        self.tick = 0
        self._gps: list | None = None
        self._call_expert: Callable[[dict, float], Any] | None = None
        self._decoder: Any = None
        self._planner: Any = None

    # leaderboard contract ----------------------------------------------------------------
    def set_global_plan(self, global_plan_gps: list, global_plan_world_coord: list) -> None:
        self._gps = list(global_plan_gps)
        self.expert.set_global_plan(global_plan_gps, global_plan_world_coord)
        if self.student is not None:
            self.student.set_global_plan(global_plan_gps, global_plan_world_coord)

    def setup(self, path_to_conf_file: str) -> None:
        from agent.geo import GeoReference
        from agent.route_planner import RoutePlanner, RoutePlannerConfig
        from agent.sensor_io import SensorDecoder
        from carla_eval.sandbox.backend import agent_caller

        self.expert.setup(path_to_conf_file)
        d = self.decode
        geo = GeoReference(d.lat_ref, d.lon_ref)
        self._decoder = SensorDecoder(self.rig, geo, self.rig.image_size, d.acceleration_source, d.max_abs_acceleration)
        self._planner = RoutePlanner(RoutePlannerConfig(d.route_reach_radius_m, d.route_min_spacing_m, d.route_lane_change_hold_m))
        self._planner.set_gps_route(self._gps or [], geo)
        self._call_expert = agent_caller(self.expert)
        if self.student is not None:
            self.student.setup(self.student_config)
            self._call_student = agent_caller(self.student)

    def sensors(self) -> list[dict[str, Any]]:
        # The expert drives from the true state: only the rig's cameras are rendered.
        own = [s for s in self.expert.sensors() if s.get("type") != "sensor.camera.rgb"]
        rig = self.rig.sensors() if self.rig_shift is None else self.rig_shift.shift_sensors(self.rig.sensors())
        merged = merge_sensors(own, rig)
        return merged if self.student is None else merge_sensors(merged, self.student.sensors())

    def __call__(self, input_data: dict, timestamp: float) -> Any:
        return self.run_step(input_data, timestamp)

    def run_step(self, input_data: dict, timestamp: float) -> Any:
        from carla_eval.vehicle_control import make_control

        if self.max_ticks is not None and self.tick >= self.max_ticks:
            raise RecordingLimitReached(f"recorded {self.tick} ticks (max_ticks)")
        truth = self.ground_truth()  # the state the sensors show, before this tick's control
        control = self._call_expert(input_data, timestamp)
        plan = np.asarray(self.plan_of(self.expert), dtype=np.float32)
        frame = self._decoder.decode(input_data, timestamp)
        target = self._planner.step(frame.ego.position, frame.ego.yaw)
        if truth is None:
            pose, boxes = (float(frame.ego.position[0]), float(frame.ego.position[1]), frame.ego.yaw), np.zeros((0, 5))
        else:
            pose, boxes = truth
        throttle, steer, brake, perturbed = self.perturber.step(
            self.tick, float(control.throttle), float(control.steer), float(control.brake))
        student_drove = False
        if self.student is not None:
            student_control = self._call_student(input_data, timestamp)  # every tick: the student keeps its state
            if self.drivers.student_drives(self.tick):
                student_drove, perturbed = True, True
                throttle, steer, brake = (float(student_control.throttle), float(student_control.steer),
                                          float(student_control.brake))
        images = {}
        truth: dict[str, dict[str, np.ndarray]] = {"depth": {}, "semantic": {}}
        if self.recorder.is_kept(self.tick):
            images = {cam: frame.images[i] for i, cam in enumerate(self.rig.camera_ids)}
            if self.recorder.config.ground_truth:
                truth = self.camera_truth(tuple(frame.images.shape[1:3]))
        self.recorder.add(TickRecord(
            tick=self.tick, ego_xy=(pose[0], pose[1]), ego_yaw=pose[2], speed=frame.ego.speed,
            acceleration=frame.ego.acceleration, command=int(target.command), target_point=target.target_ego,
            expert_plan=plan, control=(throttle, steer, brake), perturbed=perturbed, boxes=boxes, images=images,
            depth=truth["depth"], semantic=truth["semantic"], student_drove=student_drove,
        ))
        self.tick += 1
        return make_control(throttle, steer, brake) if perturbed else control

    def destroy(self) -> None:
        try:
            self.expert.destroy()
        finally:
            if self.student is not None:
                self.student.destroy()


def expert_plan(expert: Any) -> np.ndarray:
    """The sandbox expert's current plan [T, 2] (``ExpertAgent.last_plan.trajectory``: ego frame of
    the tick it was made, x forward, y right, m, 2 Hz)."""
    plan = getattr(expert, "last_plan", None)
    if plan is None:
        raise RuntimeError(f"expert {type(expert).__name__} exposes no last_plan after run_step")
    return np.asarray(getattr(plan, "trajectory", plan))


def make_backend(cfg: CollectConfig) -> Any:
    """A backend instance named by ``cfg.backend`` (``carla_eval.backend_factory`` names), built from
    ``cfg.backend_options``. A sandbox-only rig (``sandbox-bev``, mounted 20 m up) turns the
    sandbox's 3 m mount-radius rule off unless the options set it."""
    from agent.rigs import get_rig
    from carla_eval.backend_factory import create_backend
    from carla_eval.run_config import BackendSpec

    options = dict(cfg.backend_options)
    if cfg.backend == "sandbox" and "config" not in options and cfg.recorder.ground_truth:
        options.setdefault("camera_ground_truth", True)
    if cfg.backend == "sandbox" and "config" not in options and get_rig(DecodeSettings.from_agent_config(cfg.agent_config).rig).sandbox_only:
        options.setdefault("max_mount_distance", None)
    return create_backend(BackendSpec(cfg.backend, options))


def _ego_size(backend: Any) -> list[float]:
    session = getattr(backend, "last_session", None)
    ego = getattr(getattr(session, "world", None), "ego", None)
    if ego is None:
        return [5.0, 2.0]
    return [float(ego.LENGTH), float(ego.WIDTH)]


def run_job(job: Job, cfg: CollectConfig, backend: Any, decode: DecodeSettings) -> dict[str, Any]:
    """Record one route run into ``cfg.out``; returns its manifest entry (``error`` set on failure)."""
    from carla_eval.routes import parse_routes_file

    out = Path(cfg.out) / job.file_name
    t0 = time.perf_counter()
    route = parse_routes_file(job.routes_file)[job.route_index]
    recorder = EpisodeRecorder(cfg.recorder)
    dt = 1.0 / cfg.recorder.tick_hz
    perturber = Perturber(cfg.noise, job.seed, dt)
    rig_shift = cfg.camera_shift.draw(job.seed)
    student, drivers = None, None
    if cfg.policy is not None:
        student = make_student(cfg.policy)
        drivers = DriverSchedule(cfg.policy.beta, cfg.policy.window_s, job.seed, dt)
    agent = RecordingAgent(backend.create_expert_agent(), expert_plan, lambda: sandbox_ground_truth(backend),
                           recorder, perturber, decode, cfg.max_ticks,
                           camera_truth=(lambda size: sandbox_camera_truth(backend, size)) if cfg.recorder.ground_truth else None,
                           student=student, student_config=cfg.policy.config if cfg.policy else "", drivers=drivers,
                           rig_shift=rig_shift)
    outcome = backend.run_route(route, agent, cfg.expert_config, repetition=job.repetition, seed=job.seed)
    truncated = cfg.max_ticks is not None and agent.tick >= cfg.max_ticks
    status = f"Stopped after max_ticks={cfg.max_ticks}" if truncated and outcome.error and "RecordingLimitReached" in outcome.error else outcome.status
    entry = {"file": out.name, "route_id": job.route_id, "routes_file": job.routes_file, "repetition": job.repetition,
             "seed": job.seed, "status": status, "ticks": agent.tick, "wall_s": round(time.perf_counter() - t0, 2),
             "perturbation_segments": perturber.segments}
    if drivers is not None:
        entry["student_ticks"] = drivers.student_ticks
    if rig_shift is not None:
        entry["camera_shift"] = rig_shift.to_meta()
    if recorder.num_frames < 2:
        entry["error"] = f"route ended after {recorder.num_frames} frames, status {outcome.status!r}: {(outcome.error or '').strip()[-500:]}"
        return entry
    if outcome.error and not truncated:  # the frames up to the failure are still good data
        entry["note"] = f"status {outcome.status!r}: {outcome.error.strip()[-300:]}"
    meta, arrays = recorder.finish(
        route_id=job.route_id, route_index=job.route_index, repetition=job.repetition, seed=job.seed, town=route.town,
        scenario=route.scenario_type, status=status, ego_size=_ego_size(backend),
        perturbation=asdict(cfg.noise), label_source="future_poses",
        policy=cfg.policy.to_meta() if cfg.policy else {},
        camera_shift=rig_shift.to_meta() if rig_shift else {},
    )
    if rig_shift is not None:
        arrays = shift_labels(arrays, rig_shift)
    entry["sha256"] = write_episode(out, meta, arrays)
    entry["num_frames"] = meta.num_frames
    entry["perturbed_frames"] = int(arrays["perturbed"].sum())
    if cfg.policy is not None:
        entry["student_frames"] = int(arrays["student_drove"].sum())
    return entry


_STUDENT_CLASSES: dict[str, type] = {}


def make_student(policy: OnPolicyConfig) -> Any:
    """A fresh student agent for one route, built like the leaderboard evaluator builds agents
    (``Cls(host, port, debug)``); the class is imported once per process."""
    from carla_eval.agent_loader import load_agent_class

    key = str(Path(policy.agent).resolve())
    if key not in _STUDENT_CLASSES:
        _STUDENT_CLASSES[key] = load_agent_class(policy.agent)
    return _STUDENT_CLASSES[key]("localhost", 2000, False)


def _existing_entry(job: Job, cfg: CollectConfig) -> dict[str, Any] | None:
    """Manifest entry of an episode already on disk that verifies (so the job can be skipped)."""
    path = Path(cfg.out) / job.file_name
    if not path.is_file():
        return None
    try:
        ep = read_episode(path)
    except EpisodeError as exc:
        logger.warning("re-recording %s: %s", path, exc)
        return None
    if ep.meta.seed != job.seed or ep.meta.route_id != job.route_id:
        return None
    if ep.meta.policy != (cfg.policy.to_meta() if cfg.policy else {}):
        logger.warning("re-recording %s: it was recorded with another driving policy %s", path, ep.meta.policy)
        return None
    shift = cfg.camera_shift.draw(job.seed)
    if ep.meta.camera_shift != (shift.to_meta() if shift else {}):
        logger.warning("re-recording %s: it was recorded with another camera shift %s", path, ep.meta.camera_shift)
        return None
    entry = {"file": path.name, "route_id": job.route_id, "routes_file": job.routes_file, "repetition": job.repetition,
             "seed": job.seed, "status": ep.meta.status, "num_frames": ep.meta.num_frames, "sha256": file_sha256(path),
             "perturbed_frames": int(ep.arrays["perturbed"].sum()), "reused": True}
    if ep.meta.policy:
        entry["student_frames"] = int(ep.arrays["student_drove"].sum())
    return entry


# -- worker processes: one backend per process, built once -------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_init(cfg: CollectConfig, decode: DecodeSettings) -> None:
    logging.basicConfig(level=logging.WARNING)
    _WORKER["cfg"], _WORKER["decode"], _WORKER["backend"] = cfg, decode, make_backend(cfg)


def _worker_job(job: Job) -> dict[str, Any]:
    try:
        return run_job(job, _WORKER["cfg"], _WORKER["backend"], _WORKER["decode"])
    except Exception:
        return {"file": job.file_name, "route_id": job.route_id, "repetition": job.repetition, "seed": job.seed,
                "error": traceback.format_exc(limit=6)}


def run_collection(cfg: CollectConfig, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Record every job of ``cfg`` (skipping verified episodes on disk), write the manifest; returns it.

    ``workers > 1`` runs jobs in that many spawned processes (each with its own backend).
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    decode = DecodeSettings.from_agent_config(cfg.agent_config)
    jobs = plan_jobs(cfg)
    if not jobs:
        raise ValueError(f"no routes to collect in {list(cfg.routes)}" + (f" with ids {list(cfg.route_ids)}" if cfg.route_ids else ""))
    entries: list[dict[str, Any]] = []
    todo = []
    for job in jobs:
        existing = _existing_entry(job, cfg)
        if existing is not None:
            entries.append(existing)
        else:
            todo.append(job)
    report = progress or (lambda e: logger.info("%s: %s", e["file"], e.get("status", e.get("error", ""))[:200]))
    if cfg.workers <= 1 or len(todo) <= 1:
        backend = make_backend(cfg) if todo else None
        try:
            for job in todo:
                try:
                    entry = run_job(job, cfg, backend, decode)
                except Exception:
                    entry = {"file": job.file_name, "route_id": job.route_id, "repetition": job.repetition,
                             "seed": job.seed, "error": traceback.format_exc(limit=6)}
                entries.append(entry)
                report(entry)
        finally:
            if backend is not None:
                backend.close()
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(cfg.workers, len(todo)), initializer=_worker_init, initargs=(cfg, decode)) as pool:
            for entry in pool.imap_unordered(_worker_job, todo):
                entries.append(entry)
                report(entry)
    recorded = [e for e in entries if "sha256" in e]
    failed = [{"route_id": e["route_id"], "repetition": e["repetition"], "seed": e["seed"], "error": e["error"]}
              for e in entries if "error" in e]
    manifest = build_manifest(recorded, failed, cfg.to_json(), list(cfg.routes), REPO_ROOT)
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
