"""The model server (agent/serve.py) and its client (agent/plan_client.py) in the project's Python:
served plans equal in-process plans, batching keeps each request's plan, handshake and errors,
one server per address, per-request noise, the wire format and the planner config."""

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agent import plan_wire
from agent.agent_config import ConfigError, agent_config_from_dict
from agent.plan_client import ServerClient, ServerSetupError
from agent.planning import ModelGeometry, PlanError, PlannerUnavailable, PlanRequest, Planner, plan_seed

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "weights" / "ik-tiny"


def start_server(address, *extra, model=MODEL):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "agent.serve", "--model", str(model), "--listen", address,
                             "--num-threads", "1", *extra], env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
    return process.returncode, out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    address = f"ipc://{tmp_path_factory.mktemp('serve')}/model.sock"
    process = start_server(address, "--max-wait-ms", "200", "--max-batch", "4")
    client = ServerClient(address, 30.0, ready_timeout_s=120.0)
    try:
        deadline = time.monotonic() + 120.0
        while True:
            try:
                client.open()
                break
            except ServerSetupError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the server did not come up"
        yield address, process
    finally:
        client.close()
        code, out = stop(process)
        assert code == 0, out  # a clean stop on SIGTERM


@pytest.fixture(scope="module")
def runner():
    from agent.model import load_pipeline
    from agent.plan_runner import PlanRunner

    torch.set_num_threads(1)
    return PlanRunner(load_pipeline(str(MODEL)), device="cpu")


def requests(n, seed=0, num_samples=2):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        out.append(PlanRequest(images=rng.integers(0, 256, (3, 80, 144, 3), dtype=np.uint8), command=int(rng.choice([1, 3, 4])),
                               speed=float(rng.uniform(0, 12)), acceleration=float(rng.normal()),
                               target_point=rng.normal(size=2) * 20.0, seed=plan_seed(seed, k), num_samples=num_samples))
    return out


def connect(address):
    client = ServerClient(address, 30.0)
    client.open()
    return client


def test_served_plans_equal_in_process_plans(server, runner):
    address, _ = server
    client = connect(address)
    try:
        assert client.geometry == runner.geometry
        assert client.server_info["model"] == os.path.realpath(MODEL)
        for request in requests(4):
            served = client.run(request)
            local = runner.run(request)
            np.testing.assert_allclose(served.trajectory, local.trajectory, rtol=0, atol=1e-6)
            assert {"server", "round_trip", "call"} <= set(served.timings)
    finally:
        client.close()


def test_concurrent_clients_are_batched_and_keep_their_plans(server, runner):
    address, _ = server
    batch = requests(4, seed=7)
    clients = [connect(address) for _ in batch]
    results = [None] * len(batch)
    sizes = [None] * len(batch)

    def ask(i):
        results[i] = clients[i].run(batch[i])
        sizes[i] = clients[i].last_batch_size

    try:
        for _ in range(2):  # the first round makes every client "active" on the server
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(batch))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
    finally:
        for c in clients:
            c.close()
    assert max(sizes) > 1, sizes  # 200 ms of batching wait: the four requests meet
    for request, served in zip(batch, results):
        np.testing.assert_allclose(served.trajectory, runner.run(request).trajectory, rtol=0, atol=1e-5)


def test_the_seed_and_not_the_batch_decides_the_plan(runner):
    a, b = requests(2, seed=3)
    alone = runner.run(a).trajectory
    together = runner.run_batch([b, a])[1].trajectory
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    other_seed = PlanRequest(**{**a.__dict__, "seed": a.seed + 1})
    assert not np.allclose(runner.run(other_seed).trajectory, alone)


def test_slowest_fraction_reaches_the_model_and_splits_batches(runner):
    request = requests(1, seed=3, num_samples=4)[0]
    slow = dataclasses.replace(request, slowest_fraction=0.25)
    mean, slowest = runner.run(request).trajectory, runner.run(slow).trajectory

    def length(t):
        return float(np.hypot(*np.diff(np.vstack([np.zeros((1, 2)), t]), axis=0).T).sum())

    assert not np.allclose(mean, slowest) and length(slowest) < length(mean)
    with pytest.raises(PlanError, match="a batch needs one"):
        runner.run_batch([request, slow])


def test_noise_is_drawn_per_generator():
    from agent.model.diffusion import random_normal

    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    joint = random_normal((6, 4, 2), gens, torch.device("cpu"))
    np.testing.assert_array_equal(joint[:3], torch.randn((3, 4, 2), generator=torch.Generator().manual_seed(5)))
    np.testing.assert_array_equal(joint[3:], torch.randn((3, 4, 2), generator=torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match="2 generators cannot split a batch of 5"):
        random_normal((5, 4, 2), gens, torch.device("cpu"))


def test_bad_requests_get_clear_errors_and_the_server_lives_on(server):
    address, process = server
    client = connect(address)
    try:
        good = requests(1)[0]
        wrong = PlanRequest(**{**good.__dict__, "images": np.zeros((1, 64, 64, 3), np.uint8)})
        with pytest.raises(PlanError, match=r"images: expected uint8 \(3, 80, 144, 3\)"):
            client.run(wrong)  # caught on the client side
        # sent anyway: the server answers with the same check
        header, _ = client._roundtrip(lambda rid: plan_wire.plan_request(wrong, rid), 10.0)
        assert header["kind"] == "error" and header["code"] == "bad_request" and "images" in header["message"]
        header, _ = client._roundtrip(lambda rid: plan_wire.encode({"kind": "nonsense", "id": rid}), 10.0)
        assert header["code"] == "bad_request" and "unknown message kind" in header["message"]
        too_many_steps = PlanRequest(**{**good.__dict__, "num_inference_steps": 10 ** 6})
        with pytest.raises(PlanError, match="model.*num_inference_steps"):
            client.run(too_many_steps)
        header, _ = client._roundtrip(lambda rid: plan_wire.encode({"kind": "hello", "id": rid, "protocol": 99}), 10.0)
        assert header["kind"] == "error" and header["code"] == "protocol" and "99" in header["message"]
        assert client.run(good).trajectory.shape == (6, 2)
        assert process.poll() is None
    finally:
        client.close()


def test_a_second_server_on_the_same_address_exits_75(server):
    address, _ = server
    second = start_server(address)
    code, out = stop_after_exit(second)
    assert code == plan_wire.EXIT_ADDRESS_IN_USE, out
    assert "another model server holds" in out
    client = connect(address)  # the first one still serves
    client.close()


def stop_after_exit(process, timeout=60):
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return stop(process)
    return process.returncode, out


def test_server_refuses_a_bad_address_and_a_missing_model(tmp_path):
    code, out = stop_after_exit(start_server("tcp://10.0.0.1:5555"))
    assert code == 2 and "only loopback tcp addresses" in out
    code, out = stop_after_exit(start_server(f"ipc://{tmp_path}/m.sock", model=tmp_path / "none"))
    assert code == 3 and "model folder not found" in out


def test_attach_only_setup_fails_clearly_without_a_server(tmp_path):
    client = ServerClient(f"ipc://{tmp_path}/none.sock", 1.0)
    with pytest.raises(ServerSetupError, match="no model server answers.*planner.start is not set"):
        client.open()
    client.close()


def test_attach_refuses_a_server_with_another_model(server):
    address, _ = server
    client = ServerClient(address, 5.0, expected_model="/somewhere/else")
    with pytest.raises(ServerSetupError, match="serves .*ik-tiny, the agent config names /somewhere/else"):
        client.open()
    client.close()


def test_unreachable_server_raises_planner_unavailable(tmp_path, server):
    address, _ = server
    attached = connect(address)
    # A client of an address nothing listens on (geometry known from a real server): the request
    # cannot be queued, so it fails at once instead of waiting for the request timeout.
    client = ServerClient(f"ipc://{tmp_path}/gone.sock", 30.0)
    client.geometry = attached.geometry
    attached.close()
    t0 = time.monotonic()
    with pytest.raises(PlannerUnavailable, match="no connection"):
        client.run(requests(1)[0])
    assert time.monotonic() - t0 < 5.0
    assert client.outages == 1
    client.close()


def test_planner_seeds_each_request_by_its_index():
    sent = []

    class Recorder:
        geometry = None

        def run(self, request):
            sent.append(request)
            return request

        def close(self):
            pass

    planner = Planner(Recorder(), seed=11, num_samples=3)
    image = np.zeros((1, 4, 4, 3), np.uint8)
    for _ in range(3):
        planner.plan(image, 4, 1.0, 0.0, [5.0, 0.0])
    assert [r.seed for r in sent] == [plan_seed(11, k) for k in range(3)]
    assert len({r.seed for r in sent}) == 3 and all(0 <= r.seed < 2 ** 63 for r in sent)
    assert plan_seed(11, 0) != plan_seed(12, 0) and plan_seed(0, 0) == plan_seed(0, 0)
    assert sent[0].num_samples == 3 and sent[0].target_point.dtype == np.float64


# ----------------------------------------------------------------------------- wire format
def test_wire_roundtrip_and_errors():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    request = PlanRequest(images=images, command=4, speed=1.5, acceleration=-0.25, target_point=np.array([3.0, -1.0]),
                          seed=2 ** 62 + 5, num_inference_steps=None, num_samples=2)
    header, arrays = plan_wire.decode([bytes(f) for f in plan_wire.plan_request(request, 9)])
    parsed = plan_wire.parse_plan_request(header, arrays)
    assert header["id"] == 9 and parsed.seed == request.seed and parsed.speed == 1.5
    np.testing.assert_array_equal(parsed.images, images)
    assert parsed.target_point.tolist() == [3.0, -1.0] and parsed.num_inference_steps is None
    assert parsed.slowest_fraction == 1.0 and parsed.settings == (None, 2, 1.0)
    half = dataclasses.replace(request, slowest_fraction=0.5)
    parsed = plan_wire.parse_plan_request(*plan_wire.decode([bytes(f) for f in plan_wire.plan_request(half, 2)]))
    assert parsed.slowest_fraction == 0.5 and parsed.settings == (None, 2, 0.5)
    frames = [bytes(f) for f in plan_wire.plan_request(request, 1)]
    with pytest.raises(plan_wire.WireError, match="array 0: 71 bytes"):
        plan_wire.decode([frames[0], frames[1][:-1]])
    with pytest.raises(plan_wire.WireError, match="lists 1 arrays, the message has 0"):
        plan_wire.decode(frames[:1])
    with pytest.raises(plan_wire.WireError, match="not JSON"):
        plan_wire.decode([b"\xff{"])
    bad = plan_wire.encode({"kind": "plan", "id": 1, "command": 4, "speed": "fast", "acceleration": 0.0,
                            "target_point": [1.0, 0.0], "seed": 1, "num_samples": 1}, [images])
    with pytest.raises(plan_wire.WireError, match="speed: expected a finite number"):
        plan_wire.parse_plan_request(*plan_wire.decode(bad))
    old_client = plan_wire.encode({"kind": "plan", "id": 1, "command": 4, "speed": 1.0, "acceleration": 0.0,
                                   "target_point": [1.0, 0.0], "seed": 1, "num_samples": 1}, [images])
    with pytest.raises(plan_wire.WireError, match="slowest_fraction: expected a finite number, got None"):
        plan_wire.parse_plan_request(*plan_wire.decode(old_client))
    for fraction in (0.0, 1.5, True):
        with pytest.raises(PlanError, match="slowest_fraction"):
            dataclasses.replace(request, slowest_fraction=fraction).check(
                ModelGeometry(num_cameras=2, image_size=(3, 4), num_waypoints=6, waypoint_dt=0.5))


@pytest.mark.parametrize("address,ok", [("ipc:///tmp/a.sock", True), ("tcp://127.0.0.1:5555", True),
                                        ("tcp://localhost:1", True), ("tcp://[::1]:80", True),
                                        ("ipc://relative.sock", False), ("tcp://0.0.0.0:5555", False),
                                        ("tcp://127.0.0.1:0", False), ("tcp://127.0.0.1", False),
                                        ("http://127.0.0.1:80", False), ("ipc:///" + "x" * 120, False)])
def test_only_local_addresses(address, ok):
    if ok:
        assert plan_wire.check_address(address) == address
    else:
        with pytest.raises(plan_wire.WireError):
            plan_wire.check_address(address)


# ----------------------------------------------------------------------------- config
def test_planner_config(tmp_path):
    config = agent_config_from_dict({"model": "m"}, base_dir=tmp_path)
    assert config.planner.mode == "inprocess" and config.planner.address is None
    config = agent_config_from_dict({"model": "m", "planner": {
        "mode": "server", "address": "ipc:///tmp/ik.sock",
        "start": {"python": "../env/bin/python", "log_file": "logs/server.log", "max_batch": 4}}}, base_dir=tmp_path)
    start = config.planner.start
    assert start.python == str((tmp_path / "../env/bin/python").resolve()) and start.max_batch == 4
    assert start.log_file == str(tmp_path / "logs" / "server.log") and not start.keep_running
    bare = agent_config_from_dict({"model": "m", "planner": {"mode": "server", "address": "tcp://127.0.0.1:7000",
                                                             "start": {"python": "python3.11"}}}, base_dir=tmp_path)
    assert bare.planner.start.python == "python3.11"  # looked up on PATH


@pytest.mark.parametrize("planner,message", [
    ({"mode": "remote"}, "planner.mode: 'remote' is not one of"),
    ({"mode": "server"}, "planner.address: required with mode: server"),
    ({"mode": "server", "address": "tcp://192.168.1.2:80"}, "planner.address: .*only loopback"),
    ({"address": "ipc:///tmp/x.sock"}, "planner.address: only used with mode: server"),
    ({"mode": "server", "address": "ipc:///tmp/x.sock", "start": {"pyhton": "p"}}, "planner.start.pyhton: unknown key"),
    ({"mode": "server", "address": "ipc:///tmp/x.sock", "start": {}}, "planner.start"),
    ({"mode": "server", "address": "ipc:///tmp/x.sock", "start": {"python": "p", "max_batch": 0}},
     "planner.start.max_batch: must be >= 1"),
    ({"mode": "server", "address": "ipc:///tmp/x.sock", "request_timeout_s": 0}, "planner.request_timeout_s: must be > 0"),
    ({"mode": "server", "address": "ipc:///tmp/x.sock", "timeout": 1}, "planner.timeout: unknown key"),
])
def test_planner_config_errors_name_the_key(planner, message):
    with pytest.raises(ConfigError, match=message):
        agent_config_from_dict({"model": "m", "planner": planner})


# ----------------------------------------------------------------------------- the agent in both modes
def drive_agent(config_path, ticks=12):
    from agent.geo import GeoReference
    from agent.ik_agent import IKAgent
    from agent.rigs import get_rig
    from agent.synthetic import gps_plan, make_input_data, straight_route, world_plan

    agent = IKAgent("localhost", 2000, False)
    points = straight_route(200.0)
    agent.set_global_plan(gps_plan(points, [4] * len(points), GeoReference()), world_plan(points, [4] * len(points)))
    agent.setup(str(config_path))
    out = []
    for k in range(ticks):
        data = make_input_data(get_rig("carla-3cam"), GeoReference(), (0.2 * k, 0.0), 0.0, 4.0, k,
                               rng=np.random.default_rng(k))
        control = agent.run_step(data, 0.05 * k)
        out.append((agent.last_tick.ok, agent.last_tick.trajectory.copy(), (control.throttle, control.steer, control.brake)))
    planner = agent._planner
    agent.destroy()
    return out, planner


def test_ik_agent_plans_the_same_in_process_and_through_the_server(server, tmp_path):
    import yaml

    address, _ = server
    base = yaml.safe_load((MODEL / "agent.yaml").read_text())
    base["model"] = str(MODEL)
    for name, planner in (("local", {"mode": "inprocess"}), ("served", {"mode": "server", "address": address})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**base, "planner": planner}))
    local, local_planner = drive_agent(tmp_path / "local.yaml")
    served, served_planner = drive_agent(tmp_path / "served.yaml")
    assert type(local_planner.backend).__name__ == "PlanRunner"
    assert type(served_planner.backend).__name__ == "ServerClient" and served_planner.requests == 6
    for (ok_a, traj_a, control_a), (ok_b, traj_b, control_b) in zip(local, served):
        assert ok_a and ok_b
        np.testing.assert_allclose(traj_b, traj_a, rtol=0, atol=1e-6)
        np.testing.assert_allclose(control_b, control_a, rtol=0, atol=1e-6)
    assert server[1].poll() is None  # an attached agent leaves the server running


def test_server_exits_when_idle_or_orphaned(tmp_path):
    idle = start_server(f"ipc://{tmp_path}/idle.sock", "--idle-exit-s", "1")
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_parent.wait()
    orphan = start_server(f"ipc://{tmp_path}/orphan.sock", "--parent-pid", str(dead_parent.pid))
    code, out = stop_after_exit(idle, timeout=120)
    assert code == 0 and "no request for 1 s" in out, out
    code, out = stop_after_exit(orphan, timeout=120)
    assert code == 0 and f"parent process {dead_parent.pid} is gone" in out, out
