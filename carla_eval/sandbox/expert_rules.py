"""Traffic rules for the privileged expert: virtual stops for lights, stop signs and walkers.

Each tick :meth:`RuleStops.obstacles` returns stops in the expert's obstacle format (bumper gap m
ahead of the ego's front along the route, speed m/s, standstill gap m):

- a light on the route ahead that is red, or yellow when the ego can still stop at
  ``yellow_decel`` (decided once when it turns yellow), holds the ego ``line_margin`` m before its
  stop line; once the ego's front is past the line it is committed;
- a stop sign holds the ego at its line until the ego has stood still (below ``stopped_speed``)
  with its front within ``stop_zone`` m of the line; the junction's give-way rule then decides;
- a walker in the ego's path, or predicted to step into it within ``walker_horizon`` s (walking at
  its current velocity), holds the ego ``walker_gap`` m short of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carla_eval.sandbox.expert_paths import PathSample, project
from carla_eval.sandbox.signals import GREEN, YELLOW, stop_lines


@dataclass(frozen=True)
class RuleConfig:
    """Settings of the expert's rule stops (m, m/s, m/s^2, s)."""

    yellow_decel: float = 3.5
    line_margin: float = 1.0
    stopped_speed: float = 0.05
    stop_zone: float = 3.0
    walker_gap: float = 4.0
    walker_margin: float = 1.2  # added to the ego's half width: the corridor a walker must stay out of
    walker_horizon: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    walker_range: float = 60.0


class RuleStops:
    """Per-route rule state of the expert (see the module docstring)."""

    def __init__(self, session, config: RuleConfig = RuleConfig()) -> None:
        self.session = session
        self.config = config
        plan = session.plan
        self.lines: list[tuple[float, object]] = []  # (route s of the line, StopLine)
        for line in stop_lines(session.town):
            ks = [k for k, lane in enumerate(plan.lane) if lane == line.lane]
            if not ks:
                continue
            k = min(ks, key=lambda i: abs(float(plan.lane_s[i]) - line.s_stop))
            self.lines.append((float(plan.s[k]) + line.s_stop - float(plan.lane_s[k]), line))
        self.lines.sort(key=lambda p: p[0])
        self._yellow: dict[int, bool] = {}
        self._stopped: set[int] = set()

    def obstacles(self, ego_s: float, ego, path: PathSample) -> list[tuple[float, float, float]]:
        c = self.config
        world = self.session.world
        v = max(float(ego.speed), 0.0)
        out: list[tuple[float, float, float]] = []
        front = ego_s + ego.LENGTH / 2
        for s_line, line in self.lines:
            gap = s_line - front
            if gap < -0.3 or gap > 120.0:
                continue
            if line.kind == "light":
                state = world.lights.state(line.control_id, world.time)
                if state == GREEN:
                    self._yellow.pop(line.control_id, None)
                    continue
                if state == YELLOW:
                    stop = self._yellow.get(line.control_id)
                    if stop is None:
                        stop = self._yellow[line.control_id] = gap - c.line_margin > v * v / (2.0 * c.yellow_decel)
                    if not stop:
                        continue
                out.append((max(gap - c.line_margin, 0.0), 0.0, 0.5))
            else:
                if line.control_id in self._stopped:
                    continue
                if v < c.stopped_speed and gap < c.stop_zone:
                    self._stopped.add(line.control_id)
                    continue
                out.append((max(gap - c.line_margin, 0.0), 0.0, 0.5))
            break  # the first line ahead holds the ego
        out.extend(self._walker_stops(ego, path))
        return out

    def _walker_stops(self, ego, path: PathSample) -> list[tuple[float, float, float]]:
        c = self.config
        walkers = [w for w in self.session.world.walkers if np.hypot(*(w.position - ego.position)) < c.walker_range]
        if not walkers:
            return []
        reach = ego.WIDTH / 2 + c.walker_margin
        half_l = ego.LENGTH / 2
        out = []
        xy = np.array([w.position for w in walkers])
        vel = np.array([w.velocity for w in walkers])
        heading = np.zeros(len(walkers))
        for t in c.walker_horizon:
            pr = project(path, xy + vel * t, heading)
            hit = pr.valid & (np.abs(pr.lateral) < reach) & (pr.station > half_l - 0.5)
            for k in np.nonzero(hit)[0]:
                out.append((float(pr.station[k]) - half_l - 0.3, 0.0, c.walker_gap))
            if hit.any():
                keep = ~hit
                xy, vel, heading = xy[keep], vel[keep], heading[keep]
                if len(xy) == 0:
                    break
        return [(max(g, 0.0), vl, s0) for g, vl, s0 in out]
