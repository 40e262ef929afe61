"""Traffic lights and stop signs at run time: light states, and background cars obeying them.

Lights (:class:`~carla_eval.sandbox.towns.base.SignalSpec`): the lights of one junction share a
cycle of one slot per approach (``green`` + ``yellow`` + ``all_red`` seconds each, slots in phase
order), so exactly one approach of a junction is green or yellow at any time. A junction's cycle
starts at a per-route ``offset`` (s); scenarios may choose it. States are CARLA's names: "Red",
"Yellow", "Green".

Background cars (:class:`TrafficRules`, applied every tick before the cars decide) stop at a stop
line ahead on their path when its light is red, or yellow and they can still stop at
``stop_decel``; at a stop sign they stop until they have stood still (speed below
``stopped_speed``) with their front within ``stop_zone`` m of the line, then the junction's
give-way rule decides; and they stop ``walker_gap`` m short of a walker in or about to step into
their lane. Once a car's front is past a line it is committed and the line no longer holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.towns.base import SignalSpec, StopSignSpec, Town

RED, YELLOW, GREEN = "Red", "Yellow", "Green"
STOP_CLEAR_AFTER = 40.0  # m past a stop line where no car is spawned (the junction behind it)


@dataclass(frozen=True)
class SignalTiming:
    """Length of each part of an approach's slot, seconds."""

    green: float = 8.0
    yellow: float = 3.0
    all_red: float = 2.0

    @property
    def slot(self) -> float:
        return self.green + self.yellow + self.all_red


@dataclass(frozen=True)
class RulesConfig:
    """How background cars obey signals and walkers (m, m/s, m/s^2, s)."""

    stop_decel: float = 4.0
    stopped_speed: float = 0.1
    stop_zone: float = 4.0
    walker_gap: float = 3.0
    walker_reach: float = 2.2  # half corridor width (from the lane centre) a walker must be inside
    walker_horizon: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    lookahead: float = 40.0


class TrafficLights:
    """States of a town's traffic lights over game time (see the module docstring)."""

    def __init__(self, specs: tuple[SignalSpec, ...], timing: SignalTiming = SignalTiming()) -> None:
        self.specs = {s.signal_id: s for s in specs}
        self.timing = timing
        self.phases: dict[str, int] = {}
        for s in specs:
            self.phases[s.junction] = max(self.phases.get(s.junction, 0), s.phase + 1)
        self.offsets: dict[str, float] = {j: 0.0 for j in self.phases}

    def cycle(self, junction: str) -> float:
        return self.phases[junction] * self.timing.slot

    def state(self, signal_id: int, time: float) -> str:
        spec = self.specs[signal_id]
        t = self.timing
        local = (time + self.offsets[spec.junction] - spec.phase * t.slot) % self.cycle(spec.junction)
        if local < t.green:
            return GREEN
        if local < t.green + t.yellow:
            return YELLOW
        return RED

    def states(self, time: float) -> dict[int, str]:
        return {sid: self.state(sid, time) for sid in self.specs}

    def set_green_at(self, signal_id: int, time: float, into_green: float) -> None:
        """Shift the light's junction cycle so that at game time ``time`` the light has been green for
        ``into_green`` s (negative: it turns green ``-into_green`` s later)."""
        spec = self.specs[signal_id]
        self.offsets[spec.junction] = (spec.phase * self.timing.slot + into_green - time) % self.cycle(spec.junction)


@dataclass(frozen=True)
class StopLine:
    """A stop line of a light (``kind`` "light") or a stop sign ("stop") on ``lane`` at ``s_stop``."""

    kind: str
    control_id: int
    lane: tuple[str, str, int]
    s_stop: float


def stop_lines(town: Town) -> list[StopLine]:
    return ([StopLine("light", s.signal_id, s.lane, s.s_stop) for s in town.signals]
            + [StopLine("stop", s.sign_id, s.lane, s.s_stop) for s in town.stop_signs])


def _stop_sign_spec(town: Town, sign_id: int) -> StopSignSpec:
    return next(s for s in town.stop_signs if s.sign_id == sign_id)


class TrafficRules:
    """Sets each background car's ``signal_stop`` (path coordinate of the point it must stop its
    front at, or None) from lights, stop signs and walkers (see the module docstring)."""

    def __init__(self, town: Town, lights: TrafficLights, config: RulesConfig = RulesConfig()) -> None:
        self.lines = stop_lines(town)
        self.lights = lights
        self.config = config
        self._path_lines: dict[int, list[tuple[float, StopLine]]] = {}

    def spawn_ok(self, path: LanePath, u: float, clear: float = 12.0) -> bool:
        """Whether a car may appear at ``u`` on ``path``: not within ``clear`` m before a stop line
        of this town, nor between a stop line and the end of the junction behind it."""
        for u_line, line in self.lines_on(path):
            if u_line - clear <= u <= u_line + STOP_CLEAR_AFTER:
                return False
        return True

    def lines_on(self, path: LanePath) -> list[tuple[float, StopLine]]:
        """(u of the line, line) for every stop line on ``path``, in path order."""
        key = id(path)
        out = self._path_lines.get(key)
        if out is None:
            out = sorted(((path.coord(l.lane, l.s_stop), l) for l in self.lines if l.lane in path), key=lambda p: p[0])
            self._path_lines[key] = out
        return out

    def apply(self, cars: list, walkers: list, time: float) -> None:
        c = self.config
        walker_xy = np.array([w.position for w in walkers if not w.crashed]) if walkers else np.zeros((0, 2))
        walker_vel = np.array([w.velocity for w in walkers if not w.crashed]) if walkers else np.zeros((0, 2))
        for v in cars:
            path = getattr(v, "path", None)
            if path is None or path.cyclic:
                continue
            u = v.path_coord()
            if u is None:
                v.signal_stop = None
                continue
            front = u + v.LENGTH / 2
            stop = math.inf
            memo = v.__dict__.setdefault("_rules_memo", {})
            for u_line, line in self.lines_on(path):
                ahead = u_line - front
                if ahead < -0.3 or ahead > c.lookahead:
                    continue
                if line.kind == "light":
                    state = self.lights.state(line.control_id, time)
                    key = ("light", line.control_id)
                    if state == GREEN:
                        memo.pop(key, None)
                        continue
                    if state == YELLOW:
                        decision = memo.get(key)
                        if decision is None:
                            decision = memo[key] = ahead > v.speed**2 / (2 * c.stop_decel)
                        if not decision:
                            continue
                    stop = min(stop, u_line)
                else:
                    key = ("stop", line.control_id)
                    if memo.get(key):
                        continue
                    if abs(v.speed) < c.stopped_speed and ahead < c.stop_zone:
                        memo[key] = True
                        continue
                    stop = min(stop, u_line)
                break  # only the first line ahead holds the car
            if len(walker_xy):
                stop = min(stop, self._walker_stop(path, u, front, walker_xy, walker_vel))
            v.signal_stop = None if not math.isfinite(stop) else float(stop)

    def _walker_stop(self, path: LanePath, u: float, front: float, xy: np.ndarray, vel: np.ndarray) -> float:
        """u of the point to stop at for the nearest walker in (or stepping into) the lane ahead."""
        c = self.config
        lo, hi = np.searchsorted(path.u, [front, front + c.lookahead])
        if hi <= lo:
            return math.inf
        samples, us = path.xy[lo:hi], path.u[lo:hi]
        centre = samples[len(samples) // 2]
        near = np.hypot(*(xy - centre).T) < c.lookahead / 2 + 10.0
        if not near.any():
            return math.inf
        t = np.asarray(c.walker_horizon)
        pts = (xy[near][:, None, :] + vel[near][:, None, :] * t[None, :, None]).reshape(-1, 2)
        d = np.hypot(pts[:, None, 0] - samples[None, :, 0], pts[:, None, 1] - samples[None, :, 1])
        k = np.argmin(d, axis=1)
        inside = d[np.arange(len(pts)), k] < c.walker_reach
        if not inside.any():
            return math.inf
        return float(us[k[inside]].min()) - c.walker_gap
