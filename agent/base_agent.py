"""A stand-in for the leaderboard's ``AutonomousAgent`` when ``leaderboard`` is not importable.

It keeps the leaderboard contract (CARLA Leaderboard 2.0 / Bench2Drive, docs/leaderboard.md):

    agent = Cls(host, port, debug)
    agent.set_global_plan(global_plan_gps, global_plan_world_coord)   # before setup
    agent.setup(path_to_conf_file)
    agent.sensors()                                                    # validated by the evaluator
    control = agent(input_data, timestamp)   # per tick; calls run_step(input_data, timestamp)
    agent.destroy()

Differences from the leaderboard's base, all on purpose:

- No simulator is needed to build the agent. Bench2Drive's base looks up the hero vehicle in
  ``__init__``; here :meth:`get_hero` does it lazily and returns None when no CARLA world is there.
- ``set_global_plan`` stores the plan as given (the leaderboard base down-samples the dense route);
  ``_plan_gps_HACK`` / ``_plan_HACK`` keep the same full plan, as Bench2Drive's agents expect.
- ``__call__`` takes ``input_data`` and ``timestamp`` (an evaluator without the leaderboard's sensor
  interface and game timer passes them in); with no arguments it reads ``sensor_interface``, which
  only exists under the leaderboard, and raises otherwise.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from agent import metric_info


class Track(Enum):
    """Leaderboard tracks (same names and values as the leaderboard's enum)."""

    SENSORS = "SENSORS"
    MAP = "MAP"
    SENSORS_QUALIFIER = "SENSORS_QUALIFIER"
    MAP_QUALIFIER = "MAP_QUALIFIER"


class AutonomousAgent:
    """Base class of leaderboard agents (our equivalent; see the module docstring)."""

    def __init__(self, carla_host: str, carla_port: int, debug: bool = False) -> None:
        self.track = Track.SENSORS
        self._global_plan: list[tuple[dict[str, float], Any]] | None = None
        self._global_plan_world_coord: list[tuple[Any, Any]] | None = None
        self._plan_gps_HACK: list[tuple[dict[str, float], Any]] | None = None
        self._plan_HACK: list[tuple[Any, Any]] | None = None
        self.sensor_interface = None  # the leaderboard's SensorInterface; none without it
        self.wallclock_t0 = None
        self.hero_actor = None
        self.get_hero()

    # ----------------------------------------------------------------- the contract
    def setup(self, path_to_conf_file: str) -> None:
        """Build everything the agent needs; set ``self.track``."""

    def sensors(self) -> list[dict[str, Any]]:
        """The sensor suite, as leaderboard spec dicts (see agent/rigs.py)."""
        return []

    def run_step(self, input_data: dict[str, tuple[int, Any]], timestamp: float):
        """One tick: ``input_data`` maps sensor id -> (frame, data); returns a ``carla.VehicleControl``."""
        import carla

        return carla.VehicleControl(throttle=0.0, steer=0.0, brake=0.0, hand_brake=False)

    def destroy(self) -> None:
        """Release what the agent holds (called once at the end of a route)."""

    def __call__(self, input_data: dict[str, tuple[int, Any]] | None = None, timestamp: float | None = None):
        """One tick: ``run_step`` on the given data, with ``manual_gear_shift`` cleared like the leaderboard."""
        if input_data is None:
            raise RuntimeError(
                "AutonomousAgent.__call__ needs input_data and timestamp when the leaderboard's sensor "
                "interface is not available"
            )
        control = self.run_step(input_data, 0.0 if timestamp is None else timestamp)
        control.manual_gear_shift = False
        return control

    @staticmethod
    def get_ros_version() -> int:
        """-1: not a ROS agent (the evaluator calls this on the class)."""
        return -1

    def set_global_plan(self, global_plan_gps: list, global_plan_world_coord: list) -> None:
        """Store the route: ``[({'lat','lon','z'}, RoadOption)]`` and ``[(carla.Transform, RoadOption)]``."""
        self._global_plan = list(global_plan_gps)
        self._global_plan_world_coord = [(entry[0], entry[1]) for entry in global_plan_world_coord]
        self._plan_gps_HACK = list(global_plan_gps)
        self._plan_HACK = list(global_plan_world_coord)

    # ------------------------------------------------------- Bench2Drive's extras
    def get_hero(self) -> None:
        """Find the hero vehicle in a running CARLA world (``self.hero_actor``; None without one)."""
        self.hero_actor = metric_info.find_hero_actor()

    def get_metric_info(self) -> dict[str, list[float]] | None:
        """Bench2Drive's per-tick vehicle state of the hero actor, or None when there is none."""
        if self.hero_actor is None:
            self.get_hero()
        return metric_info.metric_info_from_actor(self.hero_actor)
