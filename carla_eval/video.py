"""Failure-case videos from the agent's debug frames (never by re-running the model).

Each frame: the agent's camera image (scaled up), the predicted trajectory (green, ego frame ->
pixels with :class:`~carla_eval.projection.PinholeCamera`), the route target point (red) and a HUD
(below). A multi-camera agent (``DebugFrame.views``, e.g. the carla-3cam rig) gets a row of all
its cameras (left, front, right) above the front camera at twice the size with the plan drawn in
it; the backend's top-down context view (``context_view()``: what the sandbox sees around the ego,
never an agent input) sits beside the large image when there is one. The HUD shows
(route time, speed, throttle / brake / steer bars, route command, route completion, agent extras);
for two seconds after an infraction tick the frame gets a flashing red border and the infraction
names. Output: MP4, H.264, yuv420p, 10 or 20 fps.

:class:`VideoRecorder` takes (TickInfo, DebugFrame) per tick. Mode ``failures`` keeps a ring buffer
of the last ``last_seconds`` and encodes only when asked (failed or penalised route); mode ``all``
renders and encodes every frame as it arrives (constant memory).
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Iterable

import cv2
import numpy as np

from agent.debug_frame import DebugFrame
from carla_eval.backend import TickInfo
from carla_eval.projection import PinholeCamera
from carla_eval.run_config import TICK_HZ, VideoConfig

COMMAND_NAMES = {-1: "VOID", 1: "LEFT", 2: "RIGHT", 3: "STRAIGHT", 4: "LANEFOLLOW", 5: "CHANGELANELEFT", 6: "CHANGELANERIGHT"}
FLASH_SECONDS = 2.0  # infraction markers stay this long after the tick
BLINK_TICKS = 5  # on / off period of the flashing marker (0.25 s at 20 Hz)
HUD_HEIGHT = 92  # px below the image

_GREEN = (40, 220, 60)
_RED = (235, 40, 40)
_WHITE = (240, 240, 240)
_GREY = (110, 110, 110)


@dataclass
class FrameState:
    """What one video frame shows, besides the debug frame."""

    info: TickInfo
    flash: list[str] = field(default_factory=list)  # infraction keys to flash (empty: off)
    context: np.ndarray | None = None  # [h, w, 3] uint8 RGB top-down view from the backend


def _draw_points(img: np.ndarray, cam: PinholeCamera, scale: float, traj: np.ndarray, target: np.ndarray | None) -> None:
    if traj is not None and len(traj):
        pts = np.concatenate([np.zeros((1, 2)), np.asarray(traj, dtype=np.float64).reshape(-1, 2)], axis=0)
        uv, valid = cam.project(pts)
        uv = uv * scale
        for a, b, va, vb in zip(uv[:-1], uv[1:], valid[:-1], valid[1:]):
            if va and vb:
                cv2.line(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), _GREEN, 2, cv2.LINE_AA)
        for (u, v), ok in zip(uv[1:], valid[1:]):
            if ok:
                cv2.circle(img, (int(round(u)), int(round(v))), 4, _GREEN, -1, cv2.LINE_AA)
    if target is not None:
        uv, valid = cam.project(np.asarray(target, dtype=np.float64).reshape(1, 2))
        if valid[0]:
            u, v = (uv[0] * scale).round().astype(int)
            cv2.circle(img, (int(u), int(v)), 7, _RED, 2, cv2.LINE_AA)
            cv2.drawMarker(img, (int(u), int(v)), _RED, cv2.MARKER_CROSS, 12, 2)


def _bar(img: np.ndarray, x: int, y: int, w: int, h: int, value: float, label: str, signed: bool = False) -> None:
    cv2.rectangle(img, (x, y), (x + w, y + h), _GREY, 1)
    if signed:
        mid = x + w // 2
        end = mid + int(round(np.clip(value, -1, 1) * w / 2))
        cv2.rectangle(img, (min(mid, end), y + 1), (max(mid, end), y + h - 1), _WHITE, -1)
        cv2.line(img, (mid, y), (mid, y + h), _GREY, 1)
    else:
        cv2.rectangle(img, (x, y + 1), (x + int(round(np.clip(value, 0, 1) * w)), y + h - 1), _WHITE, -1)
    cv2.putText(img, label, (x + w + 6, y + h - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.42, _WHITE, 1, cv2.LINE_AA)


def _rgb(name: str, image: Any) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be [H, W, 3] uint8 RGB, got {image.shape} {image.dtype}")
    return image


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit (width, height), centred on black."""
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(w * s)), max(1, int(h * s))
    out = np.zeros((height, width, 3), np.uint8)
    y0, x0 = (height - nh) // 2, (width - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    return out


def render_frame(frame: DebugFrame, state: FrameState, min_height: int = 384) -> np.ndarray:
    """One video frame: [H, W, 3] uint8 RGB, H and W even."""
    image = _rgb("DebugFrame.image", frame.image)
    h, w = image.shape[:2]
    views = [_rgb(f"DebugFrame.views[{k!r}]", v) for k, v in frame.views.items()] if len(frame.views) > 1 else []
    scale = 2 if views else max(1, int(np.ceil(min_height / h)))
    canvas = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    try:
        cam = PinholeCamera.from_spec(frame.camera)
        cam_scale = (w * scale) / cam.width
        _draw_points(canvas, cam, cam_scale, frame.trajectory, frame.target_point)
    except ValueError:
        pass  # a camera spec we cannot use: image and HUD only
    if state.context is not None:
        side = _fit(_rgb("context view", state.context), canvas.shape[0], canvas.shape[0])
        canvas = np.concatenate([canvas, side], axis=1)
    if views:
        row = np.concatenate([_fit(v, w, h) for v in views], axis=1)
        width = max(row.shape[1], canvas.shape[1])
        pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)))  # noqa: E731
        canvas = np.concatenate([pad(row), pad(canvas)], axis=0)
    info = state.info
    if state.flash:
        cv2.rectangle(canvas, (0, 0), (canvas.shape[1] - 1, canvas.shape[0] - 1), _RED, 6)
    hud = np.zeros((HUD_HEIGHT, canvas.shape[1], 3), dtype=np.uint8)
    text = cv2.FONT_HERSHEY_SIMPLEX
    cmd = COMMAND_NAMES.get(int(frame.command), str(frame.command))
    line1 = f"t {info.game_time:6.2f} s  v {frame.speed:5.2f} m/s  RC {info.route_completion:5.1f}%  cmd {cmd}"
    cv2.putText(hud, line1, (6, 18), text, 0.48, _WHITE, 1, cv2.LINE_AA)
    _bar(hud, 6, 28, 90, 12, frame.throttle, f"throttle {frame.throttle:.2f}")
    _bar(hud, 6, 46, 90, 12, frame.brake, f"brake {frame.brake:.2f}")
    _bar(hud, 6, 64, 90, 12, frame.steer, f"steer {frame.steer:+.2f}", signed=True)
    items = [f"{k} {v:.3g}" for k, v in list(frame.extras.items())[:4]]
    for row in range(0, len(items), 2):  # two per line, two lines
        cv2.putText(hud, "  ".join(items[row : row + 2]), (200, 36 + 14 * (row // 2)), text, 0.38, _WHITE, 1, cv2.LINE_AA)
    if state.flash:
        cv2.putText(hud, "INFRACTION", (200, 70), text, 0.5, _RED, 2, cv2.LINE_AA)
        cv2.putText(hud, ", ".join(sorted(set(state.flash))), (200, 86), text, 0.38, _RED, 1, cv2.LINE_AA)
    out = np.concatenate([canvas, hud], axis=0)
    hh, ww = out.shape[:2]
    return np.ascontiguousarray(out[: hh - hh % 2, : ww - ww % 2])


class Mp4Encoder:
    """Incremental H.264 / yuv420p MP4 encoder into memory (PyAV). Frames must keep one size."""

    def __init__(self, fps: int, crf: int = 23) -> None:
        import av

        self._av = av
        self.fps = fps
        self.crf = crf
        self._buf = io.BytesIO()
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        av = self._av
        if self._container is None:
            h, w = rgb.shape[:2]
            self._size = (w, h)
            self._container = av.open(self._buf, mode="w", format="mp4")
            stream = self._container.add_stream("libx264", rate=Fraction(self.fps, 1))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.time_base = Fraction(1, self.fps)
            stream.options = {"crf": str(self.crf), "preset": "veryfast", "threads": "1"}
            self._stream = stream
        if (rgb.shape[1], rgb.shape[0]) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def finish(self) -> bytes | None:
        """Flush and return the MP4 bytes (None when no frame was added)."""
        if self._container is None:
            return None
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._buf.getvalue()


def encode_mp4(frames: Iterable[np.ndarray], fps: int, crf: int = 23) -> bytes | None:
    enc = Mp4Encoder(fps, crf)
    for f in frames:
        enc.add(f)
    return enc.finish()


class FlashTracker:
    """Which infraction names a frame flashes: for FLASH_SECONDS after an infraction tick, on and off
    every BLINK_TICKS ticks. Feed it every tick in order."""

    def __init__(self) -> None:
        self._flash_ticks = int(FLASH_SECONDS * TICK_HZ)
        self._last: tuple[int, list[str]] | None = None

    def update(self, info: TickInfo) -> list[str]:
        if info.new_infractions:
            self._last = (info.step, [k for k, _ in info.new_infractions])
        if self._last is None:
            return []
        step0, keys = self._last
        age = info.step - step0
        if age >= self._flash_ticks or (age // BLINK_TICKS) % 2 == 1:
            return []
        return list(keys)


def _copy_frame(frame: DebugFrame) -> DebugFrame:
    """Detach a debug frame from the agent's buffers (agents may reuse arrays between ticks)."""
    return replace(
        frame,
        image=np.array(frame.image, copy=True),
        camera=dict(frame.camera),
        trajectory=np.array(frame.trajectory, dtype=np.float32, copy=True),
        target_point=None if frame.target_point is None else np.array(frame.target_point, dtype=np.float32, copy=True),
        extras=dict(frame.extras),
        views={k: np.array(v, copy=True) for k, v in frame.views.items()},
    )


class VideoRecorder:
    """Collects debug frames per tick and turns them into an MP4 (see the module docstring)."""

    def __init__(self, config: VideoConfig) -> None:
        if config.mode == "none":
            raise ValueError("VideoRecorder needs video mode 'failures' or 'all'")
        self.config = config
        self.stride = config.tick_stride
        self._flash = FlashTracker()
        self._ring: deque[tuple[DebugFrame, FrameState]] | None = None
        self._encoder: Mp4Encoder | None = None
        if config.mode == "failures":
            self._ring = deque(maxlen=max(1, int(round(config.last_seconds * config.fps))))
        else:
            self._encoder = Mp4Encoder(config.fps, config.crf)
        self._pending_last: tuple[DebugFrame, FrameState] | None = None
        self.ticks_seen = 0
        self.frames_kept = 0

    def _keep(self, item: tuple[DebugFrame, FrameState]) -> None:
        self.frames_kept += 1
        if self._ring is not None:
            self._ring.append(item)
        else:
            assert self._encoder is not None
            self._encoder.add(render_frame(item[0], item[1], self.config.min_height))

    def add(self, info: TickInfo, frame: DebugFrame | None, context: np.ndarray | None = None) -> None:
        """One tick. Every ``stride``-th tick becomes a frame; the final tick is always kept.
        ``context``: the backend's top-down RGB view of this tick, or None."""
        self.ticks_seen += 1
        state = FrameState(info, self._flash.update(info), None if context is None else np.array(context, copy=True))
        if frame is None:
            return
        item = (_copy_frame(frame), state)
        if info.step % self.stride == 0:
            self._keep(item)
            self._pending_last = None
        else:
            self._pending_last = item

    def finish(self, keep: bool = True) -> bytes | None:
        """Encode and return the MP4 (None when ``keep`` is False or there is no frame)."""
        if self._pending_last is not None:
            self._keep(self._pending_last)
            self._pending_last = None
        if not keep:
            if self._encoder is not None:
                self._encoder.finish()
            return None
        if self._ring is not None:
            return encode_mp4((render_frame(f, s, self.config.min_height) for f, s in self._ring), self.config.fps, self.config.crf)
        assert self._encoder is not None
        return self._encoder.finish()


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str


def probe_video(path_or_bytes: Any) -> VideoInfo:
    """Decode a video fully (PyAV) and report its frame count, rate, size, codec and pixel format."""
    import av

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else str(path_or_bytes)
    with av.open(src) as container:
        stream = container.streams.video[0]
        n = sum(1 for _ in container.decode(stream))
        return VideoInfo(
            frames=n,
            fps=float(stream.average_rate or stream.base_rate or 0),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
        )
