"""One simulated world: a town's road, the ego, background and scenario cars, stepped at a fixed dt.

Tick order (deterministic): traffic rules set each background car's stop point (lights, stop
signs, walkers: :mod:`signals`), the collision guard (:mod:`guard`) finds, for every background
car, the cars ahead that are in or entering its path; every non-ego car decides (IDM / MOBIL /
give-way / guard / zipper courtesy / scenario hooks) from the current state, the ego takes its
control, every car integrates one step, then contacts are resolved:

- two non-ego cars that touch are pushed apart (half the overlap each; all of it for the one that
  moves when the other is parked) and the one behind (along their mean heading) brakes to a stop
  for ``hold_time`` s, then both drive on, as CARLA's Traffic Manager cars do after a bump; the
  guard keeps the one behind there until the way is clear, so touching cars never stay stuck
  together (``traffic_contacts`` counts these contacts);
- a car that touches the ego stops for good (``crashed``), and the ego is pushed out of the
  overlap and loses the speed it had towards the other car.

Then the walkers step, and a walker the ego touches stops (``walker_contacts``; the ego is not
pushed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from highway_env import utils as hutils
from highway_env.road.road import Road

from carla_eval.sandbox.config import GuardConfig
from carla_eval.sandbox.guard import guard_leaders
from carla_eval.sandbox.map_index import MapIndex
from carla_eval.sandbox.paths import LanePath
from carla_eval.sandbox.signals import TrafficLights, TrafficRules
from carla_eval.sandbox.traffic import TownPaths
from carla_eval.sandbox.vehicle_model import AppliedControl, VehicleModel
from carla_eval.sandbox.vehicles import EgoVehicle, StaticVehicle, TrafficVehicle
from carla_eval.sandbox.walkers import Walker, WalkerContact, ego_walker_contacts


@dataclass(frozen=True)
class ActorBox:
    """Ground truth of one vehicle: id, type, centre (world m), yaw (rad), forward speed (m/s),
    size (m), current lane (from, to, id)."""

    actor_id: int
    type_id: str
    x: float
    y: float
    yaw: float
    speed: float
    length: float
    width: float
    lane: tuple[str, str, int] | None


@dataclass(frozen=True)
class Contact:
    """The ego touches ``actor_id`` this tick, its centre at (x, y) world m, moving at ``ego_speed``
    m/s (its forward speed before the contact response)."""

    actor_id: int
    type_id: str
    x: float
    y: float
    ego_speed: float = 0.0


class SandboxRoad(Road):
    """highway-env's Road with a faster ``neighbour_vehicles``: the same test (a car counts on a
    lane when its centre is on it, with highway-env's 1 m margin; the lanes just before and after
    are searched too), but only cars whose current road is one of the searched roads are tested."""

    def __init__(self, index: MapIndex, **kwargs) -> None:
        super().__init__(**kwargs)
        self.index = index

    def neighbour_vehicles(self, vehicle, lane_index=None):
        lane_index = lane_index or vehicle.lane_index
        if not lane_index:
            return None, None
        idx = self.index
        lane = idx.lanes[lane_index]
        s = lane.local_coordinates(vehicle.position)[0]
        search = [(lane, 0.0)]
        search += [(idx.lanes[n], lane.length) for n in idx.successors[lane_index]]
        search += [(idx.lanes[p], -idx.lanes[p].length) for p in idx.predecessors[lane_index]]
        roads = {(lane_index[0], lane_index[1])}
        roads.update((n[0], n[1]) for n in idx.successors[lane_index])
        roads.update((p[0], p[1]) for p in idx.predecessors[lane_index])
        s_front = s_rear = None
        v_front = v_rear = None
        for v in self.vehicles:
            li = v.lane_index
            if v is vehicle or li is None or (li[0], li[1]) not in roads:
                continue
            for search_lane, offset in search:
                s_v, lat_v = search_lane.local_coordinates(v.position)
                if not search_lane.on_lane(v.position, s_v, lat_v, margin=1):
                    continue
                s_v += offset
                if s <= s_v and (s_front is None or s_v <= s_front):
                    s_front, v_front = s_v, v
                if s_v < s and (s_rear is None or s_v > s_rear):
                    s_rear, v_rear = s_v, v
                break
        return v_front, v_rear


class World:
    """The simulated world of one route (see the module docstring)."""

    def __init__(self, index: MapIndex, paths: TownPaths, seed: int, dt: float, model: VehicleModel,
                 guard: GuardConfig = GuardConfig()) -> None:
        self.index = index
        self.town = index.town
        self.paths = paths
        self.dt = dt
        self.rng = np.random.default_rng(seed)
        self.road = SandboxRoad(index, network=self.town.network, vehicles=[], np_random=np.random.default_rng(seed + 1),
                                neighbour_vehicles_connected_lanes=True)
        self.model = model
        self.ego: EgoVehicle | None = None
        self.traffic: list = []  # background cars (managed by TrafficManager)
        self.actors: list = []  # scenario cars
        self.guard = guard
        self.frame = 0
        self.time = 0.0
        self.traffic_contacts = 0  # contacts between two non-ego cars so far
        self._next_id = 1
        # Traffic lights and stop signs (towns that have them), walkers.
        self.lights = TrafficLights(self.town.signals)
        self.rules = TrafficRules(self.town, self.lights) if (self.town.signals or self.town.stop_signs) else None
        self.walkers: list[Walker] = []
        self.walker_contacts: list[WalkerContact] = []  # the ego's walker contacts of the last tick

    # ----------------------------------------------------------------- actors
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def spawn_ego(self, xy: np.ndarray, yaw: float) -> EgoVehicle:
        self.ego = EgoVehicle(self.road, np.asarray(xy, dtype=float), float(yaw), self.model, self.index, actor_id=1)
        self.road.vehicles.insert(0, self.ego)
        return self.ego

    def spawn_traffic(self, path: LanePath, u: float, speed: float, target_speed: float, lane_change: bool,
                      giveway=None, scenario: bool = False, lateral: float = 0.0) -> TrafficVehicle:
        lane, s = path.locate(u)
        geo = self.index.geometry[lane]
        pos = geo.position(s, lateral)
        v = TrafficVehicle(self.road, pos, float(geo.heading_at(s)), speed, self.index, path, target_speed,
                           lane_change, self._new_id(), giveway=giveway,
                           type_id="vehicle.sandbox.scenario" if scenario else "vehicle.sandbox.idm",
                           start_lane=path.lanes.index(lane))
        v.guard_gap, v.guard_time_gap = self.guard.min_gap, self.guard.time_gap
        v.randomize_behavior()
        self.road.vehicles.append(v)
        (self.actors if scenario else self.traffic).append(v)
        return v

    def spawn_static(self, xy: np.ndarray, yaw: float) -> StaticVehicle:
        v = StaticVehicle(self.road, np.asarray(xy, dtype=float), float(yaw), self._new_id())
        self.road.vehicles.append(v)
        self.actors.append(v)
        return v

    def spawn_walker(self, waypoints: np.ndarray, speed: float, idle: float = 0.0, loop: bool = False,
                     start: float = 0.0, type_id: str = "walker.pedestrian.0001") -> Walker:
        w = Walker(self._new_id(), waypoints, speed, idle, loop, type_id, start)
        self.walkers.append(w)
        return w

    def remove_walker(self, walker: Walker) -> None:
        self.walkers.remove(walker)

    def light_states(self) -> dict[int, str]:
        """Every traffic light's state now (id -> "Red" / "Yellow" / "Green")."""
        return self.lights.states(self.time)

    def remove(self, vehicle) -> None:
        if vehicle is self.ego:
            raise ValueError("the ego cannot be removed")
        self.road.vehicles.remove(vehicle)
        for group in (self.traffic, self.actors):
            if vehicle in group:
                group.remove(vehicle)

    def clear_around(self, xy: np.ndarray, radius: float) -> None:
        """Remove background cars within ``radius`` m of ``xy`` (scenario set-up)."""
        for v in list(self.traffic):
            if np.hypot(*(v.position - xy)) < radius:
                self.remove(v)

    # ----------------------------------------------------------------- stepping
    def tick(self, control: AppliedControl) -> list[Contact]:
        """Advance one step of ``dt``; return the ego's contacts after the step."""
        ego = self.ego
        ending = self.index.ending_lanes
        self.road.merging_vehicles = [v for v in self.road.vehicles if v.lane_index in ending] if ending else []
        if self.rules is not None or self.walkers:
            rules = self.rules or TrafficRules(self.town, self.lights)
            self.rules = rules
            rules.apply([v for v in self.road.vehicles if isinstance(v, TrafficVehicle)], self.walkers, self.time)
        self._update_guard()
        for v in self.road.vehicles:
            if v is not ego:
                v.act()
        ego.apply(control)
        for v in self.road.vehicles:
            v.step(self.dt)
        others = [v for v in self.road.vehicles if v is not ego]
        self._resolve_traffic_contacts(others)
        contacts = self._ego_contacts(others)
        for w in self.walkers:
            w.step(self.dt)
        self.walker_contacts = ego_walker_contacts(ego, self.walkers) if self.walkers else []
        self.frame += 1
        self.time += self.dt
        return contacts

    def _update_guard(self) -> None:
        vehicles = self.road.vehicles
        movers = []
        for k, v in enumerate(vehicles):
            if isinstance(v, TrafficVehicle):
                v.guard = []
                v.clock = self.time
                if not v.crashed:
                    movers.append(k)
        if self.guard.enabled and movers:
            for k, leaders in guard_leaders(self.index, vehicles, movers, self.guard).items():
                vehicles[k].guard = leaders

    def _resolve_traffic_contacts(self, others: list) -> None:
        """Separate non-ego cars that overlap; the one behind holds (see the module docstring)."""
        if len(others) < 2:
            return
        pos = np.array([v.position for v in others])
        reach = np.array([v.diagonal / 2 for v in others])
        dist = np.hypot(pos[:, None, 0] - pos[None, :, 0], pos[:, None, 1] - pos[None, :, 1])
        close = np.argwhere(np.triu(dist < reach[:, None] + reach[None, :], k=1))
        for i, j in close:
            a, b = others[i], others[j]
            hit, _, translation = hutils.are_polygons_intersecting(a.polygon(), b.polygon(), np.zeros(2), np.zeros(2))
            if not hit or translation is None:
                continue
            self.traffic_contacts += 1
            a_fixed, b_fixed = isinstance(a, StaticVehicle), isinstance(b, StaticVehicle)
            if a_fixed and b_fixed:
                continue
            share_a = 0.0 if a_fixed else (1.0 if b_fixed else 0.5)
            if not a_fixed:
                a.position = a.position + translation * share_a
                a.on_state_update()
            if not b_fixed:
                b.position = b.position - translation * (1.0 - share_a)
                b.on_state_update()
            mean_dir = a.direction + b.direction
            along = float(np.dot(b.position - a.position, mean_dir))
            behind = b if along < 0.0 or (along == 0.0 and b.actor_id > a.actor_id) else a
            if isinstance(behind, TrafficVehicle):
                behind.hold_until = self.time + self.dt + self.guard.hold_time

    def _ego_contacts(self, others: list) -> list[Contact]:
        ego = self.ego
        out = []
        poly = None
        for v in others:
            if np.hypot(*(v.position - ego.position)) > (ego.diagonal + v.diagonal) / 2:
                continue
            poly = ego.polygon() if poly is None else poly
            hit, _, translation = hutils.are_polygons_intersecting(poly, v.polygon(), np.zeros(2), np.zeros(2))
            if not hit:
                continue
            out.append(Contact(v.actor_id, v.type_id, float(ego.position[0]), float(ego.position[1]), float(ego.speed)))
            direction = ego.direction
            towards = float(np.dot(translation, direction)) < 0.0  # the other car is ahead of the ego
            other_along = float(v.speed * np.dot(v.direction, direction))
            speed = min(ego.speed, max(0.0, other_along)) if towards and ego.speed > 0 else ego.speed
            ego.push(translation if translation is not None else np.zeros(2), speed)
            poly = ego.polygon()
            if not isinstance(v, StaticVehicle):
                v.crashed = True
        return out

    # ----------------------------------------------------------------- ground truth
    def boxes(self) -> list[ActorBox]:
        """Every vehicle, ego first."""
        return [
            ActorBox(v.actor_id, v.type_id, float(v.position[0]), float(v.position[1]), float(v.heading),
                     float(v.speed), float(v.LENGTH), float(v.WIDTH), v.lane_index)
            for v in self.road.vehicles
        ]
