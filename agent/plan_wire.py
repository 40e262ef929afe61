"""The model server's wire format (protocol version 2), shared by the agent client and the server.

A message is a ZeroMQ multipart message: frame 0 is a UTF-8 JSON header, frames 1.. are the raw
bytes of C-contiguous numpy arrays whose dtypes and shapes the header lists under ``"arrays"``
(``[["uint8", [1, 128, 128, 3]], ...]``). Arrays are sent without a copy and read back with
``np.frombuffer``. Every header has ``"kind"`` and the request ``"id"`` that its reply repeats.

Client -> server:

- ``hello`` ``{"protocol": 2}``: the handshake; the reply says what the server serves (model, device,
  geometry, batching limits, pid).
- ``plan`` ``{"command", "speed", "acceleration", "target_point": [x, y], "seed",
  "num_inference_steps", "num_samples", "slowest_fraction"}`` with one array: the uint8 images [N_cam, H, W, 3].

Server -> client: ``hello``; ``plan`` ``{"timings", "batch_size"}`` with one float64 array, the
trajectory [T, 2]; or ``error`` ``{"code", "message"}`` where ``code`` is ``"protocol"`` (version
mismatch), ``"bad_request"`` or ``"model"``.

Addresses are local only: ``ipc:///absolute/path`` (a Unix domain socket) or
``tcp://127.0.0.1:PORT`` / ``tcp://localhost:PORT`` / ``tcp://[::1]:PORT``.

Python 3.7+, numpy only (imported by the evaluator side).
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from agent.planning import ModelGeometry, Plan, PlanError, PlanRequest

PROTOCOL_VERSION = 2
EXIT_ADDRESS_IN_USE = 75  # the server's exit status when another server holds its address
MAX_HEADER_BYTES = 1 << 16
ARRAY_DTYPES = ("uint8", "float32", "float64")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_MAX_IPC_PATH = 100  # sockaddr_un holds 108 bytes on Linux, fewer elsewhere


class WireError(ValueError):
    """A malformed message or address; the text says what is wrong."""


def check_address(address: str) -> str:
    """``address`` when it is a local ZeroMQ address (see the module docstring), else :class:`WireError`."""
    if not isinstance(address, str):
        raise WireError("expected an address string, got {!r}".format(address))
    if address.startswith("ipc://"):
        path = address[len("ipc://"):]
        if not path.startswith("/"):
            raise WireError("{!r}: an ipc address needs an absolute path (ipc:///tmp/ik-drive.sock)".format(address))
        if len(path.encode("utf-8")) > _MAX_IPC_PATH:
            raise WireError("{!r}: the socket path is longer than {} bytes".format(address, _MAX_IPC_PATH))
        return address
    if address.startswith("tcp://"):
        host, sep, port = address[len("tcp://"):].rpartition(":")
        if not sep or host not in _LOCAL_HOSTS:
            raise WireError("{!r}: only loopback tcp addresses are served (tcp://127.0.0.1:PORT)".format(address))
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise WireError("{!r}: port must be a number in 1..65535".format(address))
        return address
    raise WireError("{!r}: expected ipc:///path or tcp://127.0.0.1:PORT".format(address))


def ipc_path(address: str) -> Optional[str]:
    """The socket path of an ``ipc://`` address; None for tcp."""
    return address[len("ipc://"):] if address.startswith("ipc://") else None


# --------------------------------------------------------------------------- framing
def encode(header: Dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> List[Any]:
    """Frames of one message: the JSON header (with ``"arrays"`` filled in) and the array buffers."""
    buffers = []
    specs = []
    for array in arrays:
        array = np.ascontiguousarray(array)
        if array.dtype.name not in ARRAY_DTYPES:
            raise WireError("array dtype {} is not one of {}".format(array.dtype, list(ARRAY_DTYPES)))
        specs.append([array.dtype.name, list(array.shape)])
        buffers.append(memoryview(array).cast("B") if array.size else b"")
    body = dict(header)
    body["arrays"] = specs
    return [json.dumps(body, allow_nan=False).encode("utf-8")] + buffers


def _buffer(frame: Any) -> Any:
    return getattr(frame, "buffer", frame)  # a zmq.Frame (copy=False) or bytes


def decode(frames: Sequence[Any]) -> Tuple[Dict[str, Any], List[np.ndarray]]:
    """(header, arrays) of a message from :func:`encode`; arrays are read-only views of the frames."""
    if not frames:
        raise WireError("empty message")
    raw = bytes(_buffer(frames[0]))
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError("header of {} bytes exceeds {}".format(len(raw), MAX_HEADER_BYTES))
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError("header is not JSON ({})".format(exc)) from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise WireError("header must be a JSON object with a 'kind'")
    specs = header.pop("arrays", [])
    if not isinstance(specs, list) or len(specs) != len(frames) - 1:
        raise WireError("header lists {} arrays, the message has {} data frames".format(
            len(specs) if isinstance(specs, list) else "no", len(frames) - 1))
    arrays = []
    for i, (spec, frame) in enumerate(zip(specs, frames[1:])):
        try:
            dtype_name, shape = spec
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise WireError("array {}: spec {!r} is not [dtype, shape]".format(i, spec)) from None
        if dtype_name not in ARRAY_DTYPES or any(n < 0 for n in shape):
            raise WireError("array {}: unsupported spec {!r}".format(i, spec))
        dtype = np.dtype(dtype_name)
        buffer = _buffer(frame)
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if memoryview(buffer).nbytes != expected:
            raise WireError("array {}: {} bytes for {} {}, expected {}".format(
                i, memoryview(buffer).nbytes, dtype_name, list(shape), expected))
        arrays.append(np.frombuffer(buffer, dtype=dtype).reshape(shape))
    return header, arrays


# --------------------------------------------------------------------------- messages
def hello_request(request_id: int) -> List[Any]:
    return encode({"kind": "hello", "id": int(request_id), "protocol": PROTOCOL_VERSION})


def error_reply(request_id: Any, code: str, message: str) -> List[Any]:
    return encode({"kind": "error", "id": request_id, "code": code, "message": message})


def plan_request(request: PlanRequest, request_id: int) -> List[Any]:
    header = {
        "kind": "plan",
        "id": int(request_id),
        "command": int(request.command),
        "speed": float(request.speed),
        "acceleration": float(request.acceleration),
        "target_point": [float(v) for v in np.asarray(request.target_point, dtype=np.float64).reshape(-1)],
        "seed": int(request.seed),
        "num_inference_steps": request.num_inference_steps,
        "num_samples": int(request.num_samples),
        "slowest_fraction": float(request.slowest_fraction),
    }
    return encode(header, [request.images])


def _finite(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WireError("{}: expected a finite number, got {!r}".format(key, value))
    return float(value)


def _integer(header: Dict[str, Any], key: str, allow_none: bool = False) -> Optional[int]:
    value = header.get(key)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError("{}: expected an integer, got {!r}".format(key, value))
    return value


def parse_plan_request(header: Dict[str, Any], arrays: List[np.ndarray]) -> PlanRequest:
    """The :class:`PlanRequest` of a ``plan`` message; :class:`WireError` naming a bad field."""
    if len(arrays) != 1:
        raise WireError("a plan request carries exactly one array (the images), got {}".format(len(arrays)))
    target = header.get("target_point")
    if not isinstance(target, list) or len(target) != 2:
        raise WireError("target_point: expected [x, y], got {!r}".format(target))
    return PlanRequest(
        images=arrays[0],
        command=_integer(header, "command"),
        speed=_finite(header.get("speed"), "speed"),
        acceleration=_finite(header.get("acceleration"), "acceleration"),
        target_point=np.array([_finite(v, "target_point") for v in target], dtype=np.float64),
        seed=_integer(header, "seed"),
        num_inference_steps=_integer(header, "num_inference_steps", allow_none=True),
        num_samples=_integer(header, "num_samples"),
        slowest_fraction=_finite(header.get("slowest_fraction"), "slowest_fraction"),
    )


def plan_reply(request_id: Any, plan: Plan, batch_size: int) -> List[Any]:
    return encode({"kind": "plan", "id": request_id, "timings": plan.timings, "batch_size": int(batch_size)},
                  [np.asarray(plan.trajectory, dtype=np.float64)])


def parse_plan_reply(header: Dict[str, Any], arrays: List[np.ndarray]) -> Plan:
    if len(arrays) != 1 or arrays[0].ndim != 2 or arrays[0].shape[1] != 2 or arrays[0].dtype != np.float64:
        raise PlanError("plan reply: expected one float64 [T, 2] trajectory")
    timings = header.get("timings") or {}
    if not isinstance(timings, dict):
        raise PlanError("plan reply: timings must be a mapping")
    return Plan(trajectory=arrays[0].copy(), timings={str(k): float(v) for k, v in timings.items()})


def geometry_header(geometry: ModelGeometry) -> Dict[str, Any]:
    return {"num_cameras": geometry.num_cameras, "image_size": list(geometry.image_size),
            "num_waypoints": geometry.num_waypoints, "waypoint_dt": geometry.waypoint_dt}


def parse_geometry(value: Any) -> ModelGeometry:
    try:
        size = tuple(int(v) for v in value["image_size"])
        if len(size) != 2:
            raise ValueError("image_size must have 2 values")
        return ModelGeometry(num_cameras=int(value["num_cameras"]), image_size=(size[0], size[1]),
                             num_waypoints=int(value["num_waypoints"]), waypoint_dt=float(value["waypoint_dt"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError("hello reply: bad model geometry {!r} ({})".format(value, exc)) from None
