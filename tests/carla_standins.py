"""Stand-ins for CarlaUE4.sh, the `carla` client module and the two leaderboard evaluators.

They behave like the real programs where the harness depends on it (docs/leaderboard.md):

- ``CarlaUE4.sh``: parses ``-carla-rpc-port=`` / ``-graphicsadapter=``, takes ``startup_s`` before
  it listens on the RPC port, answers every connection with its version (what
  ``carla.Client.get_server_version()`` reads); it can ignore SIGTERM, start a child (as the real
  script starts the shipping binary), crash or stop answering after some probes.
- ``carla`` (``PythonAPI/carla/carla/__init__.py``): ``Client(host, port)``, ``set_timeout``,
  ``get_server_version`` (raises RuntimeError on a time-out, as the real client does),
  ``replay_file`` / ``start_recorder`` / ``stop_recorder`` (logged), ``get_world``.
- Leaderboard 2.0 evaluator: the real argument parser (no ``--gpu-rank``: an unknown option is an
  error there), connects to the server, writes its checkpoint in the statistics manager's format
  (records without save_name / scenario_name / town_name / weather_id).
- Bench2Drive evaluator: reads ``CARLA_ROOT`` (KeyError without it), starts its own server with
  ``-graphicsadapter=<--gpu-rank>`` in a new session (``os.setsid``), sleeps ``wait_s`` (30 s in
  the real one), opens ``leaderboard/data/weather.xml`` by a relative path outside any try, and
  writes Bench2Drive's record (string weather_id, scenario *name*, save_name with a time stamp)
  and ``SAVE_PATH/<save_name>/metric_info.json``.

Per-route behaviour comes from a JSON file beside each evaluator (``behaviour.json``: route id ->
{status, score_route, hang, ignore_sigterm, spawn_child, no_record}); every start of a server or an
evaluator appends its argv, cwd, pid, pgid and environment bits to a ``*.jsonl`` log.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

SERVER = r'''
import json, os, signal, socket, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
cfg = json.load(open(os.path.join(here, "standin_server.json")))
args = sys.argv[1:]
port = int([a for a in args if a.startswith("-carla-rpc-port=")][0].split("=", 1)[1])
log = os.path.join(here, "server_starts.jsonl")
starts = sum(1 for _ in open(log)) if os.path.exists(log) else 0
with open(log, "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "args": args,
                        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n")
if cfg.get("ignore_sigterm"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if cfg.get("spawn_child"):
    subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
time.sleep(cfg.get("startup_s", 0.2))
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
crash_after = cfg.get("crash_first_start_after") if starts == 0 else None
hang_after = cfg.get("hang_first_start_after") if starts == 0 else None
held = []
n = 0
while True:
    conn, _ = srv.accept()
    n += 1
    if crash_after is not None and n > crash_after:
        os._exit(3)
    if hang_after is not None and n > hang_after:
        held.append(conn)  # accepted but never answered: a hung server
        continue
    try:
        line = conn.makefile().readline().strip()
        if line.startswith("replay "):
            with open(os.path.join(here, "replays.jsonl"), "a") as f:
                f.write(json.dumps({"request": line}) + "\n")
        conn.sendall(b"0.9.15\n")
    except OSError:
        pass
    conn.close()
'''

CARLA_MODULE = r'''
"""Stand-in of CARLA's Python client (tests only)."""
import json, os, socket

class Client:
    def __init__(self, host, port, worker_threads=0):
        self.host, self.port, self.timeout = host, int(port), 5.0

    def set_timeout(self, seconds):
        self.timeout = float(seconds)

    def _ask(self, line):
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as s:
                s.sendall((line + "\n").encode())
                answer = s.makefile().readline().strip()
        except OSError as exc:
            raise RuntimeError("time-out of %dms while waiting for the simulator, make sure the simulator is "
                               "ready and connected to %s:%d (%s)" % (self.timeout * 1000, self.host, self.port, exc))
        if not answer:
            raise RuntimeError("time-out of %dms while waiting for the simulator" % (self.timeout * 1000))
        return answer

    def get_server_version(self):
        return self._ask("version")

    def get_client_version(self):
        return "0.9.15"

    def replay_file(self, name, start, duration, follow_id, replay_sensors=False):
        self._ask("replay %s %s %s %s %s" % (name, start, duration, follow_id, replay_sensors))
        return "Replaying File: %s" % name

    def show_recorder_file_info(self, name, show_all=False):
        self._ask("info %s" % name)
        if not os.path.isfile(name):
            return "File %s not found on server" % name
        return "Version: 1\nMap: Town12\nDate: 12/01/26 10:11:12\n\nDuration: 1.5 seconds\n"

    def load_world(self, town, reset_settings=True):
        self._ask("load_world %s" % town)
        return World(self)


class Location:
    def __init__(self, x=0.0, y=0.0, z=0.0):
        self.x, self.y, self.z = x, y, z


class Rotation:
    def __init__(self, pitch=0.0, yaw=0.0, roll=0.0):
        self.pitch, self.yaw, self.roll = pitch, yaw, roll


class Transform:
    def __init__(self, location=None, rotation=None):
        self.location, self.rotation = location or Location(), rotation or Rotation()


class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Actors(list):
    def filter(self, pattern):
        return _Actors(a for a in self if a.type_id.startswith(pattern.rstrip("*")))


class _Blueprint:
    def __init__(self, name):
        self.id, self.attrs = name, {}

    def set_attribute(self, key, value):
        self.attrs[key] = value


class _Image:
    def __init__(self, frame, width, height):
        self.frame, self.width, self.height = frame, width, height
        self.raw_data = bytes([90, 120, 150, 255]) * (width * height)


class _Sensor:
    def __init__(self, bp, world):
        self.bp, self.world, self.callback = bp, world, None

    def listen(self, callback):
        self.callback = callback

    def stop(self):
        self.callback = None

    def destroy(self):
        self.world.sensors.remove(self)


class World:
    def __init__(self, client):
        self.client, self.frame, self.sensors = client, 0, []
        self.settings = _Obj(synchronous_mode=False, fixed_delta_seconds=None)
        self.hero = _Obj(type_id="vehicle.lincoln.mkz_2020", attributes={"role_name": "hero"},
                         get_velocity=lambda: _Obj(x=3.0, y=4.0, z=0.0),
                         get_control=lambda: _Obj(throttle=0.5, steer=-0.1, brake=0.0))

    def get_settings(self):
        return self.settings

    def apply_settings(self, settings):
        self.settings = settings

    def tick(self):
        self.frame += 1
        for s in list(self.sensors):
            if s.callback is not None:
                s.callback(_Image(self.frame, int(s.bp.attrs["image_size_x"]), int(s.bp.attrs["image_size_y"])))
        return self.frame

    def get_snapshot(self):
        dt = self.settings.fixed_delta_seconds or 0.05
        return _Obj(frame=self.frame, timestamp=_Obj(elapsed_seconds=self.frame * dt))

    def get_actors(self):
        return _Actors([self.hero])

    def get_blueprint_library(self):
        return _Obj(find=lambda name: _Blueprint(name))

    def spawn_actor(self, bp, transform, attach_to=None):
        if attach_to is not self.hero:
            raise RuntimeError("sensors must be attached to the hero")
        sensor = _Sensor(bp, self)
        self.sensors.append(sensor)
        return sensor
'''

_COMMON_EVAL = r'''
import argparse, atexit, json, os, signal, subprocess, sys, time
import xml.etree.ElementTree as ET
here = os.path.dirname(os.path.abspath(__file__))
behaviour_path = os.path.join(os.path.dirname(here), "behaviour.json")
behaviours = json.load(open(behaviour_path)) if os.path.exists(behaviour_path) else {}
KEYS = ["collisions_layout", "collisions_pedestrian", "collisions_vehicle", "red_light", "stop_infraction",
        "outside_route_lanes", "min_speed_infractions", "yield_emergency_vehicle_infractions", "scenario_timeouts",
        "route_dev", "vehicle_blocked", "route_timeout"]

def log_call(args):
    with open(os.path.join(os.path.dirname(here), "evaluator_calls.jsonl"), "a") as f:
        f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(), "pgid": os.getpgid(0),
                            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "save_path": os.environ.get("SAVE_PATH"),
                            "carla_root": os.environ.get("CARLA_ROOT"), "pythonpath": os.environ.get("PYTHONPATH")}) + "\n")

def base_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", default=2000, type=int)
    p.add_argument("--traffic-manager-port", default=8000, type=int)
    p.add_argument("--traffic-manager-seed", default=0, type=int)
    p.add_argument("--debug", type=int, default=0)
    p.add_argument("--record", type=str, default="")
    p.add_argument("--timeout", default=300.0, type=float)
    p.add_argument("--routes", required=True)
    p.add_argument("--routes-subset", default="", type=str)
    p.add_argument("--repetitions", type=int, default=1)
    p.add_argument("-a", "--agent", type=str, required=True)
    p.add_argument("--agent-config", type=str, default="")
    p.add_argument("--track", type=str, default="SENSORS")
    p.add_argument("--resume", type=bool, default=False)
    p.add_argument("--checkpoint", type=str, default="./simulation_results.json")
    p.add_argument("--debug-checkpoint", type=str, default="./live_results.txt")
    return p

def routes_of(args):
    root = ET.parse(args.routes).getroot()
    out = []
    for r in root.iter("route"):
        if args.routes_subset and r.get("id") not in args.routes_subset.split(","):
            continue
        out.append(r)
    return out

def write(path, records, done, total, started=False):
    data = {"_checkpoint": {"global_record": {}, "progress": [done, total], "records": records},
            "entry_status": "Started" if started else "Finished", "eligible": not started,
            "sensors": ["carla_camera", "carla_camera", "carla_camera", "carla_gnss", "carla_imu", "carla_speedometer"],
            "values": [], "labels": []}
    with open(path, "w") as f:
        json.dump(data, f, indent=4)

def behave(route_id):
    b = behaviours.get(route_id, {})
    if b.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if b.get("spawn_child"):
        subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"])
    return b

def record_of(route, b, extra):
    inf = {k: [] for k in KEYS}
    for k, msgs in b.get("infractions", {}).items():
        inf[k] = msgs
    rc = float(b.get("score_route", 100.0))
    ip = float(b.get("score_penalty", 1.0))
    status = b.get("status", "Perfect")
    rec = {"index": 0, "route_id": "RouteScenario_%s_rep0" % route.get("id"), "status": status,
           "num_infractions": sum(len(v) for v in inf.values()), "infractions": inf,
           "scores": {"score_route": rc, "score_penalty": ip, "score_composed": rc * ip},
           "meta": {"route_length": 100.0, "duration_game": 12.5, "duration_system": 30.0}}
    rec.update(extra)
    return rec
'''

LB_EVALUATOR = _COMMON_EVAL + r'''
def main():
    args = base_parser().parse_args()  # no --gpu-rank in Leaderboard 2.0: passing it is an error
    log_call(args)
    import carla
    client = carla.Client(args.host, args.port)
    client.set_timeout(args.timeout)
    client.get_server_version()
    routes = routes_of(args)
    records = []
    write(args.checkpoint, records, 0, len(routes), started=True)
    for route in routes:
        b = behave(route.get("id"))
        if b.get("hang"):
            time.sleep(3600)
        if b.get("no_record"):
            sys.exit(-1)
        if args.record:
            open(os.path.join(args.record, "RouteScenario_%s_rep0.log" % route.get("id")), "w").write("carla recorder")
        records.append(record_of(route, b, {}))
    write(args.checkpoint, records, len(records), len(routes))

main()
'''

B2D_EVALUATOR = _COMMON_EVAL + r'''
def get_weather_id(weather):
    tree = ET.parse("leaderboard/data/weather.xml")  # relative to the working directory, as in Bench2Drive
    for case in tree.getroot().findall("case"):
        first = case[0]
        if all(v == weather.get(k) for k, v in first.items() if k != "route_percentage"):
            return case.get("weather_id")
    return None

def main():
    p = base_parser()
    p.add_argument("--gpu-rank", type=int, default=0)
    args = p.parse_args()
    log_call(args)
    carla_path = os.environ["CARLA_ROOT"]
    cfg = json.load(open(os.path.join(os.path.dirname(here), "standin_b2d.json")))
    cmd = [os.path.join(carla_path, "CarlaUE4.sh"), "-RenderOffScreen", "-nosound",
           "-carla-rpc-port=%d" % args.port, "-graphicsadapter=%d" % args.gpu_rank]
    server = subprocess.Popen(cmd, preexec_fn=os.setsid)
    with open(os.path.join(os.path.dirname(here), "b2d_servers.jsonl"), "a") as f:
        f.write(json.dumps({"pid": server.pid, "cmd": cmd}) + "\n")
    atexit.register(os.killpg, server.pid, signal.SIGKILL)
    time.sleep(cfg.get("wait_s", 30))
    import carla
    client = carla.Client(args.host, args.port)
    for attempt in range(40):
        try:
            client.set_timeout(2.0)
            client.get_server_version()
            break
        except RuntimeError:
            time.sleep(0.2)
    routes = routes_of(args)
    records = []
    write(args.checkpoint, records, 0, len(routes), started=True)
    for route in routes:
        scenario_name = route.find("scenarios").find("scenario").get("name")
        weathers = route.find("weathers").findall("weather")
        weather_id = get_weather_id(dict(weathers[0].attrib))
        name = "RouteScenario_%s_rep0" % route.get("id")
        save_name = "%s_%s_%s_%s_%s" % (name, route.get("town"), scenario_name, weather_id, time.strftime("%m_%d_%H_%M_%S"))
        b = behave(route.get("id"))
        if b.get("hang"):
            time.sleep(3600)
        if b.get("no_record"):
            sys.exit(-1)
        save_path = os.environ.get("SAVE_PATH")
        if save_path:
            os.makedirs(os.path.join(save_path, save_name), exist_ok=True)
            info = {str(i): {"acceleration": [0.1, 0.0, 0.0], "angular_velocity": [0.0, 0.0, 0.01],
                             "forward_vector": [1.0, 0.0, 0.0], "right_vector": [0.0, 1.0, 0.0],
                             "location": [i * 0.5, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0]} for i in range(30)}
            json.dump(info, open(os.path.join(save_path, save_name, "metric_info.json"), "w"))
        records.append(record_of(route, b, {"scenario_name": scenario_name, "weather_id": weather_id,
                                            "save_name": save_name, "town_name": route.get("town")}))
    write(args.checkpoint, records, len(records), len(routes))

main()
'''

WEATHER_XML = """<weathers>
    <case weather_id="0">
        <weather route_percentage="0" cloudiness="5.0" precipitation="0.0" fog_density="2.0"/>
        <weather route_percentage="100" cloudiness="5.0" precipitation="0.0" fog_density="2.0"/>
    </case>
    <case weather_id="15">
        <weather route_percentage="0" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
        <weather route_percentage="100" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
    </case>
</weathers>
"""

ROUTES_XML = """<routes>
  <route id="{rid}" town="Town12">
    <waypoints><position x="0.0" y="0.0" z="0.0"/><position x="100.0" y="0.0" z="0.0"/></waypoints>
    <scenarios>
      <scenario name="ParkedObstacle_1" type="ParkedObstacle"><trigger_point x="10" y="0" z="0" yaw="0"/></scenario>
    </scenarios>
    <weathers>
      <weather route_percentage="0" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
      <weather route_percentage="100" cloudiness="100.0" precipitation="50.0" fog_density="10.0"/>
    </weathers>
  </route>
</routes>
"""


def _write_exec(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@dataclass
class Standins:
    carla_root: Path
    lb_root: Path
    sr_root: Path
    b2d_root: Path
    agent: Path

    def server_cfg(self, **cfg) -> None:
        (self.carla_root / "standin_server.json").write_text(json.dumps(cfg))

    def b2d_cfg(self, **cfg) -> None:
        (self.b2d_root / "leaderboard" / "standin_b2d.json").write_text(json.dumps(cfg))

    def behaviour(self, root: Path, **routes) -> None:
        (root / "behaviour.json").write_text(json.dumps(routes))

    def lb_behaviour(self, **routes) -> None:
        self.behaviour(self.lb_root, **routes)

    def b2d_behaviour(self, **routes) -> None:
        self.behaviour(self.b2d_root / "leaderboard", **routes)

    @staticmethod
    def jsonl(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def server_starts(self) -> list[dict]:
        return self.jsonl(self.carla_root / "server_starts.jsonl")

    def lb_calls(self) -> list[dict]:
        return self.jsonl(self.lb_root / "evaluator_calls.jsonl")

    def b2d_calls(self) -> list[dict]:
        return self.jsonl(self.b2d_root / "leaderboard" / "evaluator_calls.jsonl")

    def routes_file(self, folder: Path, rid: str = "7") -> Path:
        path = folder / f"routes_{rid}.xml"
        path.write_text(ROUTES_XML.format(rid=rid))
        return path


def make_standins(tmp: Path) -> Standins:
    carla_root = tmp / "carla"
    _write_exec(carla_root / "CarlaUE4.sh", SERVER)
    module = carla_root / "PythonAPI" / "carla" / "carla" / "__init__.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    module.write_text(CARLA_MODULE)
    lb_root = tmp / "leaderboard"
    _write_exec(lb_root / "leaderboard" / "leaderboard_evaluator.py", LB_EVALUATOR)
    sr_root = tmp / "scenario_runner"
    sr_root.mkdir(parents=True, exist_ok=True)
    b2d_root = tmp / "Bench2Drive"
    _write_exec(b2d_root / "leaderboard" / "leaderboard" / "leaderboard_evaluator.py", B2D_EVALUATOR)
    (b2d_root / "leaderboard" / "data").mkdir(parents=True, exist_ok=True)
    (b2d_root / "leaderboard" / "data" / "weather.xml").write_text(WEATHER_XML)
    (b2d_root / "scenario_runner").mkdir(parents=True, exist_ok=True)
    agent = tmp / "agent_file.py"
    agent.write_text("def get_entry_point():\n    return 'Agent'\n")
    s = Standins(carla_root, lb_root, sr_root, b2d_root, agent)
    s.server_cfg(startup_s=0.2)
    s.b2d_cfg(wait_s=0.3)
    return s


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat_path = Path(f"/proc/{pid}/stat")
    if not stat_path.exists():
        return False
    text = stat_path.read_text()
    return text[text.rfind(")") + 2:].split()[0] != "Z"
