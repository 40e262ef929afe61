"""Pedestrians of the sandbox: walkers that follow a polyline at their own speed.

A walker is a 0.6 m x 0.6 m box (1.8 m tall in the cameras) moving along ``waypoints`` [N, 2]
(world m) at ``speed`` m/s after an ``idle`` wait; at the end it stands still, or turns back when
``loop`` is set (ambient walkers pacing a sidewalk). A scenario can hold a walker (``hold``) until
its trigger fires. Contact with the ego (the ego's box and the walker's box overlap) stops the
walker for good (``crashed``); the ego is not pushed (a walker does not stop a car).

Ambient walkers stroll the town's ``walker_paths`` (sidewalks beside the roads, never on a lane);
their number, places and speeds come from the route's seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WALKER_SIZE = 0.6  # m, footprint side
WALKER_HEIGHT = 1.8  # m


@dataclass(frozen=True)
class WalkerContact:
    """The ego touches walker ``actor_id`` this tick; (x, y) is the ego's centre (world m)."""

    actor_id: int
    type_id: str
    x: float
    y: float


class Walker:
    """One pedestrian (see the module docstring)."""

    LENGTH = WALKER_SIZE
    WIDTH = WALKER_SIZE

    def __init__(self, actor_id: int, waypoints: np.ndarray, speed: float, idle: float = 0.0, loop: bool = False,
                 type_id: str = "walker.pedestrian.0001", start: float = 0.0) -> None:
        pts = np.asarray(waypoints, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 2:
            raise ValueError("a walker needs at least two waypoints")
        seg = np.hypot(*np.diff(pts, axis=0).T)
        self.waypoints = pts
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.walk_speed = float(speed)
        self.idle = float(idle)
        self.loop = loop
        self.actor_id = actor_id
        self.type_id = type_id
        self.along = float(np.clip(start, 0.0, self.cum[-1]))
        self.direction = 1.0
        self.hold = False
        self.crashed = False
        self.finished = False
        self.speed = 0.0
        self.position = self._point(self.along)
        self.heading = self._heading(self.along)

    def _point(self, a: float) -> np.ndarray:
        return np.array([np.interp(a, self.cum, self.waypoints[:, 0]), np.interp(a, self.cum, self.waypoints[:, 1])])

    def _heading(self, a: float) -> float:
        k = int(np.clip(np.searchsorted(self.cum, a, side="right") - 1, 0, len(self.waypoints) - 2))
        d = (self.waypoints[k + 1] - self.waypoints[k]) * self.direction
        return math.atan2(d[1], d[0])

    @property
    def velocity(self) -> np.ndarray:
        """World velocity [2] m/s."""
        return self.speed * np.array([math.cos(self.heading), math.sin(self.heading)])

    def step(self, dt: float) -> None:
        if self.crashed or self.hold or self.finished:
            self.speed = 0.0
            return
        if self.idle > 0.0:
            self.idle -= dt
            self.speed = 0.0
            return
        self.along += self.direction * self.walk_speed * dt
        end = self.cum[-1]
        if self.along >= end or self.along <= 0.0:
            if self.loop:
                self.along = float(np.clip(self.along, 0.0, end))
                self.direction *= -1.0
            else:
                self.along = float(np.clip(self.along, 0.0, end))
                self.finished = True
        self.speed = 0.0 if self.finished else self.walk_speed
        self.position = self._point(self.along)
        self.heading = self._heading(self.along)


def ego_walker_contacts(ego, walkers: list[Walker]) -> list[WalkerContact]:
    """Walkers whose box overlaps the ego's box this tick (each one is stopped: ``crashed``)."""
    out = []
    c, s = math.cos(ego.heading), math.sin(ego.heading)
    half_l, half_w = ego.LENGTH / 2, ego.WIDTH / 2
    for w in walkers:
        d = w.position - ego.position
        if abs(d[0]) > 6.0 or abs(d[1]) > 6.0:
            continue
        along, lat = c * d[0] + s * d[1], -s * d[0] + c * d[1]
        # Separating axes of two boxes: the ego's axes, then the walker's.
        r = WALKER_SIZE / 2 * (abs(math.cos(w.heading - ego.heading)) + abs(math.sin(w.heading - ego.heading)))
        if abs(along) > half_l + r or abs(lat) > half_w + r:
            continue
        cw, sw = math.cos(w.heading), math.sin(w.heading)
        a2, l2 = cw * d[0] + sw * d[1], -sw * d[0] + cw * d[1]
        dh = ego.heading - w.heading
        r_ego_a = half_l * abs(math.cos(dh)) + half_w * abs(math.sin(dh))
        r_ego_l = half_l * abs(math.sin(dh)) + half_w * abs(math.cos(dh))
        if abs(a2) > WALKER_SIZE / 2 + r_ego_a or abs(l2) > WALKER_SIZE / 2 + r_ego_l:
            continue
        w.crashed = True
        out.append(WalkerContact(w.actor_id, w.type_id, float(ego.position[0]), float(ego.position[1])))
    return out


def spawn_ambient(world, count: int, rng: np.random.Generator, around: np.ndarray, radius: float = 150.0) -> list[Walker]:
    """``count`` walkers pacing the town's sidewalks within ``radius`` m of ``around``."""
    paths = [p for p in world.town.walker_paths]
    out: list[Walker] = []
    if not paths or count <= 0:
        return out
    tries = 0
    while len(out) < count and tries < 20 * count:
        tries += 1
        pts = paths[int(rng.integers(len(paths)))]
        a = float(rng.uniform(0.0, float(np.hypot(*(pts[-1] - pts[0])))))
        w = world.spawn_walker(pts, speed=float(rng.uniform(0.9, 1.6)), loop=True, start=a,
                               type_id=f"walker.pedestrian.{int(rng.integers(1, 49)):04d}")
        if np.hypot(*(w.position - around)) > radius:
            world.remove_walker(w)
            continue
        if rng.random() < 0.5:
            w.direction = -1.0
        out.append(w)
    return out
