"""Leaderboard entry point of the IK-grounded driving agent: ``--agent agent/ik_agent.py``.

The CARLA evaluator (Leaderboard 2.0 or Bench2Drive) puts this folder on ``sys.path``, imports this
file as the top-level module ``ik_agent``, calls :func:`get_entry_point` and builds
``IKAgent(host, port, debug)``. Then: ``set_global_plan`` -> ``setup(config)`` -> ``sensors()`` ->
per tick ``run_step(input_data, timestamp)`` -> ``destroy()``. The embedded sandbox plays the same
evaluator part.

This module and everything it imports in server mode run on Python 3.7+ with numpy, carla, PyYAML
and pyzmq only: the plans then come from a model server (``python -m agent.serve``, started by
``setup`` or already running) in the project's own environment. In-process mode
(``planner: {mode: inprocess}``, the default) imports torch and the model in :meth:`IKAgent.setup`
and needs the project's Python (>= 3.10). Importing this module is cheap and needs neither torch,
nor the leaderboard, nor a CARLA server. ``IKAgent`` derives from the leaderboard's
``AutonomousAgent`` when ``leaderboard`` is importable, else from the equivalent
``agent.base_agent.AutonomousAgent``. The project's modules are imported as ``agent.<module>``:
the project root must be on ``PYTHONPATH`` (e.g. the submission image's ``TEAM_CODE_ROOT``) or the
project installed.

See docs/agent.md for the configuration keys, the sensor rigs and the frames.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import carla

try:  # the real base class when the user's leaderboard checkout is on PYTHONPATH
    from leaderboard.autoagents.autonomous_agent import AutonomousAgent, Track

    LEADERBOARD_BASE = True
except ImportError:
    from agent.base_agent import AutonomousAgent, Track

    LEADERBOARD_BASE = False

from agent import metric_info as _metric_info

logger = logging.getLogger("agent.ik_agent")

_HERO_RETRY_TICKS = 100  # look for a missing hero vehicle again after this many ticks


def get_entry_point() -> str:
    """Name of the agent class in this module (the leaderboard's contract)."""
    return "IKAgent"


class AgentSetupError(RuntimeError):
    """The configuration, model and sensor rig do not fit together."""


class IKAgent(AutonomousAgent):
    """Camera-only agent: the IK-grounded VLA plans, a PID controller tracks the plan."""

    def __init__(self, carla_host: str, carla_port: int, debug: bool = False) -> None:
        self.hero_actor = None
        self.config = None
        self.save_name: str | None = None
        self._rig = None
        self._loop = None
        self._planner = None  # agent.planning.Planner: the model in-process or a model server client
        self._runner = None  # the in-process agent.plan_runner.PlanRunner (None with a server)
        self._recorder = None
        self._ticks = 0
        self._hero_retry_at = 0
        self._debug_frame = None
        self._last_image = None
        self.last_tick = None  # agent.driving_loop.TickOutput of the last run_step (timings, plan, mode)
        self._debug_frames_switch: bool | None = None  # set by enable_debug_frames; wins over the config
        self._plan_gps_HACK = None  # not set by every leaderboard base before set_global_plan
        self._plan_HACK = None
        super().__init__(carla_host, carla_port, debug)
        self.debug = bool(debug)
        self.track = Track.SENSORS

    # ------------------------------------------------------------------ plan
    def set_global_plan(self, global_plan_gps: list, global_plan_world_coord: list) -> None:
        """Store the route like the leaderboard base, and keep the full plan as ``_plan_gps_HACK`` /
        ``_plan_HACK`` (the route planner thins the full plan itself, so every base behaves alike)."""
        super().set_global_plan(global_plan_gps, global_plan_world_coord)
        self._plan_gps_HACK = list(global_plan_gps)
        self._plan_HACK = list(global_plan_world_coord)
        from agent.geo import GeoFitError, plan_geo_reference  # the map's geo-reference, from the plan's two forms
        try:
            self._plan_geo = plan_geo_reference(global_plan_gps, global_plan_world_coord)
        except GeoFitError as exc:
            self._plan_geo = exc

    # ----------------------------------------------------------------- setup
    def setup(self, path_to_conf_file: str) -> None:
        """Load the YAML config (``"<config>"`` or Bench2Drive's ``"<config>+<save_name>"``), the planner
        (the model in-process, or a model server: ``planner.mode``), and build the driving loop. Raises
        on a bad config, model, server or rig (the evaluator then records "Agent couldn't be set up")."""
        from agent.agent_config import load_agent_config, split_setup_argument
        from agent.controller import TrajectoryController
        from agent.driving_loop import DrivingLoop
        from agent.geo import GeoReference
        from agent.rigs import get_rig
        from agent.route_planner import RoutePlanner
        from agent.safety import RateLimitedWarner
        from agent.sensor_io import SensorDecoder

        self._close_planner()
        config_path, save_name = split_setup_argument(path_to_conf_file)
        config = load_agent_config(config_path)
        self.track = Track.SENSORS
        self.config = config
        self.save_name = save_name
        self._rig = rig = get_rig(config.rig)

        plan = self._plan_gps_HACK or self._global_plan
        if not plan:
            raise AgentSetupError("no global plan: set_global_plan must be called before setup")
        geo = GeoReference(config.lat_ref, config.lon_ref) if config.lat_ref is not None else getattr(self, "_plan_geo", None)
        if not isinstance(geo, GeoReference):  # config forces none and the plan did not fit one
            raise AgentSetupError(f"geo-reference: {geo}")
        route = RoutePlanner(config.route)
        route.set_gps_route(plan, geo)

        self._planner = planner = self._make_planner(config)
        geometry = planner.geometry
        if geometry.num_cameras != rig.num_cameras:
            self._close_planner()
            raise AgentSetupError(
                f"the model at {config.model} reads {geometry.num_cameras} camera(s) but rig {rig.name!r} "
                f"has {rig.num_cameras} ({', '.join(rig.camera_ids)})"
            )
        if geometry.image_size != rig.image_size:
            logger.info("rig %s images %s are resized to the model's %s", rig.name, rig.image_size,
                        geometry.image_size)
        try:
            planner.warm_up()
        except Exception as exc:
            self._close_planner()
            raise AgentSetupError(f"the model at {config.model} failed on a blank warm-up input: {exc!r}") from exc
        controller_config = config.controller
        if abs(controller_config.waypoint_dt - geometry.waypoint_dt) > 1e-9:
            logger.info("controller.waypoint_dt %.3f s replaced by the model's %.3f s",
                        controller_config.waypoint_dt, geometry.waypoint_dt)
            controller_config = dataclasses.replace(controller_config, waypoint_dt=geometry.waypoint_dt)

        warner = RateLimitedWarner(logger, config.safety.warn_interval_s)
        self._loop = DrivingLoop(
            decoder=SensorDecoder(rig, geo, geometry.image_size, config.acceleration_source,
                                  config.max_abs_acceleration, jpeg_quality=config.jpeg_quality),
            route=route,
            planner=planner,
            controller=TrajectoryController(controller_config),
            planning_hz=config.planning_hz,
            creep=config.creep,
            safety=config.safety,
            warner=warner,
        )
        self._setup_metric_info(config, save_name)
        where = config.planner.address if config.planner.mode == "server" else "in-process"
        logger.info("IKAgent ready: model %s on %s (%s), rig %s, planning at %.1f Hz (%s base)", config.model,
                    config.device, where, rig.name, config.planning_hz, "leaderboard" if LEADERBOARD_BASE else "own")

    def _make_planner(self, config: Any) -> Any:
        """An ``agent.planning.Planner`` over the in-process model or a model server client."""
        from agent.planning import Planner

        if config.planner.mode == "inprocess":
            from agent.plan_runner import PlanRunner

            self._runner = backend = PlanRunner(self._load_pipeline(config), device=config.device)
        else:
            from agent.plan_client import ServerSetupError, connect_server

            try:
                backend = connect_server(config.planner, str(config.model), config.device, config.num_threads)
            except ServerSetupError as exc:
                raise AgentSetupError(str(exc)) from exc
            except ImportError as exc:  # pyzmq is imported when the client is built
                raise AgentSetupError(f"planner mode 'server' needs pyzmq in the evaluator's Python ({exc})") from exc
        return Planner(backend, seed=config.seed, num_inference_steps=config.num_inference_steps,
                       num_samples=config.num_samples, slowest_fraction=config.slowest_fraction)

    def _close_planner(self) -> None:
        planner, self._planner, self._runner = self._planner, None, None
        if planner is not None:
            planner.close()

    @staticmethod
    def _load_pipeline(config: Any) -> Any:
        import torch

        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        from agent.model import load_pipeline

        if not Path(config.model).is_dir():
            raise AgentSetupError(f"model folder not found: {config.model}")
        return load_pipeline(str(config.model), device=config.device)

    def _setup_metric_info(self, config: Any, save_name: str | None) -> None:
        # Bench2Drive compatibility: its scripts export SAVE_PATH; the YAML's save_path wins.
        save_path = config.save_path if config.save_path is not None else os.environ.get("SAVE_PATH") or None
        self._recorder = None
        if save_name and save_path:
            target = Path(save_path) / save_name / _metric_info.METRIC_INFO_FILENAME
            self._recorder = _metric_info.MetricInfoRecorder(target, config.metric_info_every)
            self.get_hero()

    # --------------------------------------------------------------- sensors
    def sensors(self) -> list[dict[str, Any]]:
        """The rig's sensor specs (camera ids in the model's camera order, then gnss, imu, speed)."""
        if self._rig is None:
            raise RuntimeError("IKAgent.sensors() called before setup()")
        return self._rig.sensors()

    # ------------------------------------------------------------------ tick
    def run_step(self, input_data: dict[str, tuple[int, Any]], timestamp: float) -> carla.VehicleControl:
        """One tick -> ``carla.VehicleControl``; never raises (failures give a full brake)."""
        from agent.safety import SAFE_CONTROL

        step = self._ticks
        self._ticks += 1
        if self._loop is None:
            logger.warning("run_step called before setup -> safe stop")
            control = SAFE_CONTROL
        else:
            out = self._loop.step(input_data, timestamp)
            self.last_tick = out
            control = out.control
            self._after_tick(step, out)
        return carla.VehicleControl(throttle=float(control.throttle), steer=float(control.steer),
                                    brake=float(control.brake), hand_brake=False, reverse=False,
                                    manual_gear_shift=False)

    def _after_tick(self, step: int, out: Any) -> None:
        try:
            if self._recorder is not None:
                self._record_metric_info(step)
            if self.debug_frames_enabled:
                self._debug_frame = self._make_debug_frame(out)
        except Exception as exc:  # bookkeeping must never stop the car
            self._loop.warner.warn("bookkeeping", "metric_info/debug frame failed: %r", exc)

    def _record_metric_info(self, step: int) -> None:
        if self.hero_actor is None and step >= self._hero_retry_at:
            self._hero_retry_at = step + _HERO_RETRY_TICKS
            self.get_hero()
        entry = self.get_metric_info()
        if entry is not None:
            self._recorder.record(step, entry)

    def _make_debug_frame(self, out: Any) -> Any:
        import numpy as np

        from agent.debug_frame import DebugFrame

        if out.frame is not None:
            self._last_image = dict(zip(self._rig.camera_ids, out.frame.native))
        if not self._last_image:
            return None
        main = _front_camera(self._rig)
        control = out.control
        extras = {"plan_age_s": float(out.plan_age_s), "ok": float(out.ok),
                  "creep": float(out.mode == "creep"), "failures": float(self._loop.failures)}
        extras.update({f"{k}_ms": float(v) for k, v in out.timings.items()})
        return DebugFrame(
            image=self._last_image[main.id],
            camera=main.to_sensor(),
            trajectory=np.zeros((0, 2)) if out.trajectory is None else out.trajectory,
            target_point=None if out.target is None else out.target.target_ego,
            command=0 if out.target is None else int(out.target.command),
            speed=0.0 if out.frame is None else float(out.frame.ego.speed),
            throttle=float(control.throttle),
            steer=float(control.steer),
            brake=float(control.brake),
            extras=extras,
            views=self._last_image if len(self._last_image) > 1 else {},
        )

    @property
    def debug_frames_enabled(self) -> bool:
        """Debug frames are kept: :meth:`enable_debug_frames` decides if it was called, else the config."""
        if self._debug_frames_switch is not None:
            return self._debug_frames_switch
        return bool(self.config is not None and self.config.debug_frames)

    def enable_debug_frames(self, enabled: bool) -> None:
        """Switch debug frames on or off (the harness calls this before a route it records);
        overrides the config's ``debug_frames``."""
        self._debug_frames_switch = bool(enabled)
        if not enabled:
            self._debug_frame = None

    def get_debug_frame(self) -> Any:
        """The last tick's :class:`agent.debug_frame.DebugFrame` when debug frames are on, else None."""
        return self._debug_frame if self.debug_frames_enabled else None

    def __call__(self, input_data: dict[str, tuple[int, Any]] | None = None, timestamp: float | None = None):
        """Per-tick call. Under the leaderboard (no arguments) the base reads its sensor interface and
        game time; an evaluator without them passes ``input_data`` and ``timestamp``."""
        if input_data is None:
            return super().__call__()
        control = self.run_step(input_data, 0.0 if timestamp is None else float(timestamp))
        control.manual_gear_shift = False
        return control

    # ------------------------------------------------------- Bench2Drive extras
    def get_hero(self) -> None:
        """Find the hero vehicle when a CARLA world is there; None otherwise (never raises)."""
        self.hero_actor = _metric_info.find_hero_actor()

    def get_metric_info(self) -> dict[str, list[float]] | None:
        """Bench2Drive's per-tick state of the hero vehicle, or None without one."""
        return _metric_info.metric_info_from_actor(self.hero_actor)

    # --------------------------------------------------------------- destroy
    def destroy(self) -> None:
        """Write metric_info.json (when there is any), release the model, stop a server it started."""
        try:
            if self._recorder is not None and self._recorder.entries:
                self._recorder.flush()
        except OSError as exc:
            logger.warning("could not write %s: %s", self._recorder.path, exc)
        finally:
            self._recorder = None
            self._loop = None
            self.hero_actor = None
            try:
                self._close_planner()  # stops a model server this agent started
            except Exception as exc:
                logger.warning("closing the planner failed: %r", exc)


def _front_camera(rig):
    """The rig's camera looking closest to straight ahead (the one videos project the plan into)."""
    return min(rig.cameras, key=lambda cam: abs(cam.yaw))
