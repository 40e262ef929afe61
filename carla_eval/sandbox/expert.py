"""The privileged sandbox expert: plans a trajectory from ground truth, tracks it with the shared PID.

It reads the running route's world through the backend (``backend.session``): the ego, every other
vehicle, the dense route and the town's lanes. Each tick it

1. finds its lane on the route's road and the lane the route wants (the route's lane a little
   ahead, so it changes lanes where the route does);
2. overtakes a stopped or slow car ahead in its lane (a side lane that continues for 60 m and whose
   gaps are safe), and comes back once it is ``return_gap`` past it;
3. changes lanes only when the target lane's front and rear gaps are safe, counting the cars
   moving into that lane too (else it keeps its lane and, where its lane ends, slows down to stop
   ``lane_end_gap`` before the end and wait for a gap); it abandons a started lane change, back to
   its own lane, while its centre is still there and a gap closes;
4. builds a path along the chosen lane (lateral offset blended out), a speed limit along it (lane
   limit, 2.5 m/s^2 lateral acceleration in curves, braking at 2 m/s^2 ahead of slower stretches),
   and rolls an IDM car-following model forward for 3 s against every vehicle in or cutting into
   its corridor, plus virtual stops: give-way lines (:mod:`giveway`, gap acceptance) and lane ends;
5. samples that roll-out at 2 Hz (T = 6 waypoints, ego frame x forward, y right, metres) and
   tracks it with ``agent.controller.TrajectoryController``, the same PID the IK agent uses.

The plan is exposed as ``last_plan`` and through ``get_debug_frame()``; ``ground_truth()`` gives the
per-tick privileged state (ego and other vehicles' boxes) for data collection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.controller import ControllerConfig, TrajectoryController
from agent.debug_frame import DebugFrame
from agent.ego_frame import world_to_ego
from agent.rigs import get_rig
from carla_eval.sandbox.expert_paths import PathSample, RouteRoads, build_path, project
from carla_eval.sandbox.expert_rules import RuleStops
from carla_eval.sandbox.giveway import GiveWay, GiveWayConfig, find_conflicts
from carla_eval.sandbox.towns import LaneIndex
from carla_eval.sandbox.vehicles import StaticVehicle, idm_accel
from carla_eval.sandbox.world import ActorBox

# The carla-3cam rig (agent/rigs.py): three front cameras + GNSS + IMU + speedometer. The expert
# drives from the true state; it asks for the agent's cameras so that its runs cost what an
# agent's runs cost, and so that data collection renders the images the model is trained on.
DEFAULT_EXPERT_SENSORS: tuple[dict[str, Any], ...] = tuple(get_rig("carla-3cam").sensors())


@dataclass(frozen=True)
class ExpertConfig:
    """Behaviour of the expert (m, s, m/s, m/s^2)."""

    controller: ControllerConfig = field(default_factory=ControllerConfig)
    num_waypoints: int = 6
    waypoint_dt: float = 0.5
    speed_factor: float = 1.0  # x lane speed limit
    max_speed: float = 25.0
    lateral_accel: float = 2.5
    plan_decel: float = 2.0
    idm_accel: float = 2.0
    idm_decel: float = 3.0
    idm_time_gap: float = 1.4
    idm_min_gap: float = 4.0
    standstill_gap: float = 9.0  # bumper gap kept behind a stopped vehicle (room to steer around it)
    max_decel: float = 8.0
    corridor_margin: float = 0.5
    cut_in_horizon: tuple[float, ...] = (0.5, 1.0, 1.5)
    lane_change_front_time: float = 1.0
    lane_change_rear_time: float = 1.5
    lane_change_min_gap: float = 6.0
    lane_change_min_gap_slow: float = 2.5  # rear bumper gap enough behind a car slower than 2 m/s
    merge_horizon: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5)  # s: cars moving into the target lane within these
    lane_change_abort_relax: float = 0.5  # a started lane change is abandoned when gaps fall below this x the needs
    lane_change_retry_time: float = 2.0  # s before a new lane change after abandoning one
    lane_end_gap: float = 12.0  # m between the front and the end of an ending lane when waiting there
    overtake_lookahead: float = 55.0
    overtake_speed_ratio: float = 0.6
    overtake_min_lane: float = 60.0
    return_gap: float = 10.0
    giveway: GiveWayConfig = field(default_factory=lambda: GiveWayConfig(time_margin=1.2, go_accel=2.0))
    sensors: tuple[dict[str, Any], ...] = DEFAULT_EXPERT_SENSORS


@dataclass
class GroundTruth:
    """Privileged state of one tick: every vehicle's box (ego first), the route progress, every
    walker's box and every traffic light's state (id -> "Red" / "Yellow" / "Green")."""

    frame: int
    time: float
    ego: ActorBox
    others: list[ActorBox]
    route_progress_m: float
    walkers: list[ActorBox] = field(default_factory=list)
    lights: dict[int, str] = field(default_factory=dict)


@dataclass
class ExpertPlan:
    """One planning result: ``trajectory`` [T, 2] ego frame (x forward, y right) m at 2 Hz; the lane
    followed; the free-road target speed (m/s); the leader gap (m, inf when none); flags."""

    trajectory: np.ndarray
    lane: LaneIndex
    target_speed: float
    leader_gap: float
    leader_id: int | None
    yielding: bool
    lane_change: bool
    overtaking: bool


@dataclass
class _Objects:
    ids: np.ndarray
    xy: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    static: np.ndarray
    target_lane: list  # the lane each car is driving to (background cars; None for others)


class ExpertPlanner:
    """Per-route planning state of the expert (see the module docstring)."""

    def __init__(self, session, config: ExpertConfig) -> None:
        self.session = session
        self.config = config
        self.index = session.index
        self.plan = session.plan
        self.roads = RouteRoads(session.plan)
        plan, idx = self.plan, self.index
        on_j = np.array([(l[0], l[1]) in idx.town.junction_roads for l in plan.lane])
        prio = np.array([idx.lanes[l].priority for l in plan.lane])
        zones = find_conflicts(idx, plan.xy, plan.s, on_j, prio, session.paths.priority_paths, config.giveway)
        self.giveway = GiveWay(zones, session.paths.priority_paths, config.giveway)
        self.rules = RuleStops(session)  # traffic lights, stop signs, walkers
        # Last index of each point's road run (the lane the route leaves that road in).
        n = len(plan.lane)
        self.run_end = np.zeros(n, dtype=np.int64)
        end = n - 1
        for k in range(n - 1, -1, -1):
            if k < n - 1 and (plan.lane[k][0], plan.lane[k][1]) != (plan.lane[k + 1][0], plan.lane[k + 1][1]):
                end = k
            self.run_end[k] = end
        self.overtake: tuple[int, int] | None = None  # (lane id, obstacle actor id)
        self.changing_to: LaneIndex | None = None
        self.retry_at = -math.inf  # game time before which no new lane change starts (after an abort)
        self.aborted = 0  # lane changes abandoned on this route

    # ----------------------------------------------------------------- helpers
    def _objects(self) -> _Objects:
        world = self.session.world
        vs = [v for v in world.road.vehicles if v is not world.ego]
        if not vs:
            z = np.zeros(0)
            return _Objects(z.astype(int), np.zeros((0, 2)), z, z, z, z, z.astype(bool), [])
        return _Objects(
            np.array([v.actor_id for v in vs]),
            np.array([v.position for v in vs], dtype=np.float64),
            np.array([v.heading for v in vs], dtype=np.float64),
            np.array([v.speed for v in vs], dtype=np.float64),
            np.array([v.LENGTH for v in vs], dtype=np.float64),
            np.array([v.WIDTH for v in vs], dtype=np.float64),
            np.array([isinstance(v, StaticVehicle) or getattr(v, "crashed", False) for v in vs]),
            [getattr(v, "target_lane_index", None) for v in vs],
        )

    def _current_lane(self, ego, route_lane: LaneIndex) -> LaneIndex:
        a, b, _ = route_lane
        n = self.index.road_lane_count((a, b))
        if n == 1:
            return route_lane
        best, best_d = route_lane, math.inf
        for k in range(n):
            lane = (a, b, k)
            _, lat = self.index.lanes[lane].local_coordinates(ego.position)
            if abs(lat) < best_d:
                best, best_d = lane, abs(lat)
        return best

    def _normalise(self, lane: LaneIndex, s: float, cursor: int) -> tuple[LaneIndex, float]:
        """Move (lane, s) onto the successor / predecessor lane when s is past an end."""
        for _ in range(4):
            length = self.index.lanes[lane].length
            if s > length:
                succ = self.index.successors[lane]
                if not succ:
                    return lane, length
                want = self.roads.roads[cursor + 1] if cursor + 1 < len(self.roads.roads) else None
                pick = next((c for c in succ if (c[0], c[1]) == want and c[2] == lane[2]), None)
                pick = pick or next((c for c in succ if c[2] == lane[2]), succ[0])
                s -= length
                lane = pick
            elif s < 0.0:
                pred = self.index.predecessors[lane]
                if not pred:
                    return lane, 0.0
                pick = next((c for c in pred if c[2] == lane[2]), pred[0])
                lane = pick
                s += self.index.lanes[pick].length
            else:
                break
        return lane, s

    def _corridor_hits(self, path: PathSample, obj: _Objects, ego) -> list[tuple[float, float, int]]:
        """Leaders in the ego's corridor along ``path``: (bumper gap m, speed along path m/s, index)."""
        c = self.config
        if len(obj.ids) == 0:
            return []
        half_l = ego.LENGTH / 2
        out = []
        pr = project(path, obj.xy, obj.heading)
        cosd, sind = np.abs(np.cos(pr.dheading)), np.abs(np.sin(pr.dheading))
        w_eff = obj.width / 2 * cosd + obj.length / 2 * sind
        l_eff = obj.length / 2 * cosd + obj.width / 2 * sind
        reach = ego.WIDTH / 2 + c.corridor_margin + w_eff
        end = path.station[-1]
        inside = pr.valid & (np.abs(pr.lateral) < reach) & (pr.station - l_eff > half_l - 0.5) & (pr.station < end)
        for k in np.nonzero(inside)[0]:
            gap = float(pr.station[k] - l_eff[k] - half_l)
            out.append((gap, float(obj.speed[k] * math.cos(pr.dheading[k])), int(k)))
        # Cars heading along the path that will enter the corridor soon (cut-ins).
        moving = (obj.speed > 1.0) & (np.abs(pr.dheading) < math.radians(35)) & ~inside
        for t in c.cut_in_horizon:
            if not moving.any():
                break
            dirs = np.stack([np.cos(obj.heading), np.sin(obj.heading)], axis=1)
            future = obj.xy + dirs * (obj.speed * t)[:, None]
            pf = project(path, future, obj.heading)
            enter = moving & pf.valid & (np.abs(pf.lateral) < reach) & (pr.station - l_eff > half_l)
            for k in np.nonzero(enter)[0]:
                gap = float(pr.station[k] - l_eff[k] - half_l)
                out.append((gap, float(obj.speed[k] * math.cos(pr.dheading[k])), int(k)))
            moving = moving & ~enter
        return out

    def _lane_change_safe(self, target: LaneIndex, s_t: float, cursor: int, obj: _Objects, ego, v: float,
                          relax: float = 1.0) -> bool:
        """Front and rear gaps in lane ``target`` are safe (needs scaled by ``relax``), counting the
        cars in it and the cars moving into it: heading into it within ``merge_horizon`` s, or
        driving to it (a background car's target lane)."""
        c = self.config
        lane, s = self._normalise(target, s_t, cursor)
        path = build_path(self.index, self.roads, cursor, lane, s, ahead=80.0, behind=60.0)
        if len(obj.ids) == 0:
            return True
        pr = project(path, obj.xy, obj.heading)
        along = pr.valid & (np.abs(pr.dheading) < math.radians(60))
        in_lane = along & (np.abs(pr.lateral) < 2.6)
        lat_speed = obj.speed * np.sin(pr.dheading)
        for t in c.merge_horizon:
            in_lane |= along & (np.abs(pr.lateral + lat_speed * t) < 2.6)
        driving_to = np.array([tl is not None and tl in (target, lane) for tl in obj.target_lane], dtype=bool)
        in_lane |= along & driving_to & (np.abs(pr.lateral) < 6.5)
        for k in np.nonzero(in_lane)[0]:
            st = float(pr.station[k])
            gap = abs(st) - (obj.length[k] + ego.LENGTH) / 2
            vo = float(obj.speed[k])
            if st >= 0.0:
                need = max(c.lane_change_min_gap, c.lane_change_front_time * v + 1.5 * max(0.0, v - vo))
            else:
                min_gap = c.lane_change_min_gap if vo >= 2.0 else c.lane_change_min_gap_slow
                need = max(min_gap, c.lane_change_rear_time * vo + 2.0 * max(0.0, vo - v))
            if gap < need * relax:
                return False
        return True

    def _lane_usable(self, lane: LaneIndex, s: float, cursor: int) -> bool:
        """A side lane that is open (not forbidden) and continues for ``overtake_min_lane`` m."""
        if self.index.lanes[lane].forbidden:
            return False
        ln, ss = self._normalise(lane, s, cursor)
        path = build_path(self.index, self.roads, cursor, ln, ss, ahead=self.config.overtake_min_lane)
        ids = {l[2] for l in path.lane}
        return path.station[-1] >= self.config.overtake_min_lane - 1.0 and ids == {lane[2]} and not any(
            self.index.lanes[l].forbidden for l in path.lane)

    def _speed_profile(self, path: PathSample) -> np.ndarray:
        c = self.config
        limits = np.array([float(self.index.lanes[l].speed_limit) for l in path.lane]) * c.speed_factor
        heading = np.unwrap(path.heading)
        if len(heading) > 2:
            kappa = np.abs(np.gradient(heading, path.station))
        else:
            kappa = np.zeros_like(heading)
        v_lim = np.minimum(np.minimum(limits, c.max_speed), np.sqrt(c.lateral_accel / np.maximum(kappa, 1e-6)))
        key = v_lim**2 + 2.0 * c.plan_decel * path.station
        allowed = np.minimum.accumulate(key[::-1])[::-1] - 2.0 * c.plan_decel * path.station
        return np.sqrt(np.maximum(allowed, 0.0))

    # ----------------------------------------------------------------- the plan
    def plan_step(self) -> ExpertPlan:
        c = self.config
        session = self.session
        world, plan, idx = session.world, self.plan, self.index
        ego = world.ego
        v = max(float(ego.speed), 0.0)
        i = min(session.criteria.progress, len(plan.s) - 1)
        cursor = self.roads.cursor_at(i)
        route_lane = plan.lane[i]
        cur = self._current_lane(ego, route_lane)
        road = (cur[0], cur[1])
        j = plan.index_at(float(plan.s[i]) + 10.0 + 1.0 * v)
        desired = plan.lane[j] if (plan.lane[j][0], plan.lane[j][1]) == road else plan.lane[int(self.run_end[i])]
        obj = self._objects()
        s_cur, _ = idx.lanes[cur].local_coordinates(ego.position)

        # Leader in the current lane (for overtaking decisions).
        ln, ss = self._normalise(cur, float(s_cur), cursor)
        cur_path = build_path(idx, self.roads, cursor, ln, ss, ahead=c.overtake_lookahead + 10.0)
        hits = self._corridor_hits(cur_path, obj, ego)
        lane_leader = min(hits, key=lambda h: h[0]) if hits else None

        # Overtaking state machine.
        target = desired
        if self.overtake is not None:
            lane_id, ob_id = self.overtake
            k = np.nonzero(obj.ids == ob_id)[0]
            behind = True
            if k.size:
                rel = float(np.dot(obj.xy[k[0]] - ego.position, ego.direction))
                behind = rel < -(c.return_gap + ego.LENGTH)
            if behind:
                self.overtake = None
            elif lane_id < idx.road_lane_count(road):
                target = (road[0], road[1], lane_id)
        elif lane_leader is not None and cur == desired and self.changing_to is None:
            gap, v_lead, k = lane_leader
            limit = float(idx.lanes[cur].speed_limit) * c.speed_factor
            slow = v_lead < c.overtake_speed_ratio * limit or bool(obj.static[k]) or v_lead < 1.0
            if slow and gap < c.overtake_lookahead:
                left, right = idx.side_lanes(cur)
                for side in (left, right):
                    if side is None:
                        continue
                    s_side, _ = idx.lanes[side].local_coordinates(ego.position)
                    if self._lane_usable(side, float(s_side), cursor) and self._lane_change_safe(side, float(s_side), cursor, obj, ego, v):
                        self.overtake = (side[2], int(obj.ids[k]))
                        target = side
                        break

        # Lane change execution: abandoned (back to the own lane) while the ego's centre is still in
        # its own lane and the target lane's gaps close; finished once the centre is in the target lane.
        lane_change = False
        deadline = math.inf
        if self.changing_to is not None and (self.changing_to[0], self.changing_to[1]) != road:
            self.changing_to = None
        if self.changing_to is not None and cur == self.changing_to:
            self.changing_to = None
        if self.changing_to is not None:
            s_n, _ = idx.lanes[self.changing_to].local_coordinates(ego.position)
            if not self._lane_change_safe(self.changing_to, float(s_n), cursor, obj, ego, v, relax=c.lane_change_abort_relax):
                self.changing_to = None
                self.retry_at = world.time + c.lane_change_retry_time
                self.aborted += 1
        path_lane = cur
        ending = not idx.successors[cur]
        if self.changing_to is not None:
            path_lane, lane_change = self.changing_to, True
        elif target != cur and (target[0], target[1]) == road:
            step = 1 if target[2] > cur[2] else -1
            nxt = (road[0], road[1], cur[2] + step)
            s_n, _ = idx.lanes[nxt].local_coordinates(ego.position)
            if world.time >= self.retry_at and self._lane_change_safe(nxt, float(s_n), cursor, obj, ego, v):
                self.changing_to = nxt
                path_lane, lane_change = nxt, True
            elif ending:
                deadline = idx.lanes[cur].length - float(s_cur) - ego.LENGTH / 2 - c.lane_end_gap

        # Path along the chosen lane.
        s_p, lat_p = idx.lanes[path_lane].local_coordinates(ego.position)
        lane_p, s_p = self._normalise(path_lane, float(s_p), cursor)
        if abs(lat_p) > 1.2:
            blend = float(np.clip(2.2 * v, 10.0, 40.0))
            if self.overtake is not None and lane_leader is not None:
                blend = min(blend, max(8.0, lane_leader[0]))
            if lane_change and ending:  # leave the ending lane before it ends
                blend = min(blend, max(6.0, idx.lanes[cur].length - float(s_cur) - ego.LENGTH / 2 - 2.0))
        else:
            blend = float(np.clip(1.5 * v, 6.0, 20.0))
        horizon = max(40.0, 3.0 * max(v, c.max_speed * 0.5) + 25.0)
        path = build_path(idx, self.roads, cursor, lane_p, s_p, ahead=horizon, lat0=float(lat_p), blend=blend)
        v_allow = self._speed_profile(path)

        # Obstacles: corridor leaders, give-way stop, lane-end deadline.
        path_hits = self._corridor_hits(path, obj, ego)
        obstacles = [(gap, max(vl, 0.0), c.idm_min_gap if vl > 0.5 else c.standstill_gap) for gap, vl, _ in path_hits]
        leader = min(path_hits, key=lambda h: h[0]) if path_hits else None
        stop = self.giveway.stop_distance(float(plan.s[i]), v, ego.LENGTH, world.road.vehicles, me=ego)
        yielding = stop is not None
        if yielding:
            obstacles.append((max(stop, 0.0), 0.0, 0.5))
        if math.isfinite(deadline):
            obstacles.append((max(deadline, 0.0), 0.0, 0.5))
        rule_stops = self.rules.obstacles(float(plan.s[i]), ego, path)
        obstacles.extend(rule_stops)
        yielding = yielding or bool(rule_stops)

        # IDM roll-out along the path.
        traj_s = self._rollout(v, path, v_allow, obstacles)
        pts = path.point_at(traj_s)
        traj = world_to_ego(pts, ego.position, float(ego.heading)).astype(np.float64)
        return ExpertPlan(
            trajectory=traj,
            lane=path_lane,
            target_speed=float(v_allow[0]) if len(v_allow) else 0.0,
            leader_gap=float(leader[0]) if leader else math.inf,
            leader_id=int(obj.ids[leader[2]]) if leader else None,
            yielding=yielding,
            lane_change=lane_change,
            overtaking=self.overtake is not None,
        )

    def _rollout(self, v0: float, path: PathSample, v_allow: np.ndarray, obstacles: list[tuple[float, float, float]]) -> np.ndarray:
        """Stations (m) of the ego at t = dt_wp, 2 dt_wp, ... under IDM (0.1 s steps); obstacles are
        (bumper gap m, speed along the path m/s, standstill gap m), moving at constant speed."""
        c = self.config
        dt = 0.1
        n_wp = c.num_waypoints
        steps_per_wp = int(round(c.waypoint_dt / dt))
        s, v = 0.0, v0
        out = []
        t = 0.0
        a_cap = 2.5
        for step in range(n_wp * steps_per_wp):
            v_des = float(np.interp(s, path.station, v_allow)) if len(v_allow) else 0.0
            a = idm_accel(v, max(v_des, 0.1), math.inf, 0.0, c.idm_accel, c.idm_decel, c.idm_min_gap, c.idm_time_gap)
            if v_des < 0.1:
                a = -c.idm_decel if v > 0 else 0.0
            for gap0, vl, s0 in obstacles:
                gap = gap0 + vl * t - s
                a = min(a, idm_accel(v, max(v_des, 0.1), gap, v - vl, c.idm_accel, c.idm_decel, s0, c.idm_time_gap))
            a = min(max(a, -c.max_decel), a_cap)
            v_new = max(0.0, v + a * dt)
            s += 0.5 * (v + v_new) * dt
            v = v_new
            t += dt
            if (step + 1) % steps_per_wp == 0:
                out.append(s)
        return np.array(out)


class ExpertAgent:
    """Leaderboard-contract agent driving with privileged access to a SandboxBackend's world."""

    def __init__(self, backend, config: ExpertConfig | None = None) -> None:
        self.backend = backend
        self.config = config or ExpertConfig()
        self.controller = TrajectoryController(self.config.controller)
        self._planner: ExpertPlanner | None = None
        self._session = None
        self.last_plan: ExpertPlan | None = None
        self._debug: DebugFrame | None = None
        self.global_plan = None

    # contract
    def set_global_plan(self, global_plan_gps, global_plan_world_coord) -> None:
        self.global_plan = (global_plan_gps, global_plan_world_coord)

    def setup(self, path_to_conf_file: str) -> None:
        self.controller.reset()
        self._planner = None
        self._session = None

    def sensors(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.config.sensors]

    def run_step(self, input_data: dict, timestamp: float):
        import carla

        session = self.backend.session
        if session is None:
            raise RuntimeError("the sandbox expert only drives inside SandboxBackend.run_route")
        if self._planner is None or self._session is not session:
            self._planner = ExpertPlanner(session, self.config)
            self._session = session
            self.controller.reset()
        plan = self._planner.plan_step()
        ego = session.world.ego
        cmd = self.controller.step(plan.trajectory, float(ego.speed), session.world.dt)
        self.last_plan = plan
        self._debug = self._make_debug(input_data, plan, cmd, float(ego.speed))
        return carla.VehicleControl(throttle=cmd.throttle, steer=cmd.steer, brake=cmd.brake)

    def destroy(self) -> None:
        self._planner = None
        self._session = None

    # extras
    def get_debug_frame(self) -> DebugFrame | None:
        return self._debug

    def ground_truth(self) -> GroundTruth | None:
        """Privileged state of the current tick (None outside a route)."""
        session = self.backend.session
        if session is None:
            return None
        world = session.world
        boxes = world.boxes()
        walkers = [ActorBox(w.actor_id, w.type_id, float(w.position[0]), float(w.position[1]), float(w.heading),
                            float(w.speed), w.LENGTH, w.WIDTH, None) for w in world.walkers]
        return GroundTruth(world.frame, world.time, boxes[0], boxes[1:], session.ego_progress_s, walkers, world.light_states())

    def _make_debug(self, input_data: dict, plan: ExpertPlan, cmd, speed: float) -> DebugFrame | None:
        cams = [s for s in self.config.sensors if s.get("type") == "sensor.camera.rgb" and s["id"] in input_data]
        if not cams:
            return None
        views = {c["id"]: np.ascontiguousarray(input_data[c["id"]][1][..., 2::-1]) for c in cams}
        cam = min(cams, key=lambda c: abs(float(c.get("yaw", 0.0))))  # the front camera
        image = views[cam["id"]]
        session = self._session
        i = min(session.criteria.progress, len(session.plan.s) - 1)
        k = session.plan.index_at(float(session.plan.s[i]) + 20.0)
        target = world_to_ego(session.plan.xy[k], session.world.ego.position, float(session.world.ego.heading))
        return DebugFrame(
            image=image,
            camera=dict(cam),
            trajectory=plan.trajectory.copy(),
            target_point=np.asarray(target, dtype=np.float64),
            command=int(session.plan.option[k]),
            speed=speed,
            throttle=cmd.throttle,
            steer=cmd.steer,
            brake=cmd.brake,
            views=views if len(views) > 1 else {},
            extras={
                "target_speed": plan.target_speed,
                "leader_gap": plan.leader_gap if math.isfinite(plan.leader_gap) else -1.0,
                "yielding": float(plan.yielding),
                "lane_change": float(plan.lane_change),
                "overtaking": float(plan.overtaking),
            },
        )
