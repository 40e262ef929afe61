"""What an agent shows the harness after each ``run_step``, for failure videos.

An agent that supports videos implements ``get_debug_frame() -> DebugFrame | None``; the harness
calls it after every ``run_step`` and never re-runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class DebugFrame:
    """One tick of the agent's view and decision.

    Attributes:
        image: [H, W, 3] uint8 RGB, the camera image the agent used (the first camera of its rig).
        camera: the ``sensors()`` spec dict of that camera (x, y, z, roll, pitch, yaw, width, height,
            fov, id), so points in the ego frame can be projected into ``image``.
        trajectory: [T, 2] float, the plan being tracked, ego frame metres (x forward, y right), 2 Hz.
        target_point: [2] float, the route target in the ego frame (m), or None.
        command: RoadOption value of the current route command (1 LEFT ... 6 CHANGELANERIGHT).
        speed: ego forward speed, m/s.
        throttle, steer, brake: the control returned this tick.
        extras: free-form numbers for the HUD (e.g. plan age, stage latencies in ms).
        views: every camera of the rig, id -> [H, W, 3] uint8 RGB, in the rig's order (``image`` is
            one of them: the front camera when the rig has one); empty for a one-camera agent.
    """

    image: np.ndarray
    camera: dict[str, Any]
    trajectory: np.ndarray
    target_point: np.ndarray | None
    command: int
    speed: float
    throttle: float
    steer: float
    brake: float
    extras: dict[str, float] = field(default_factory=dict)
    views: dict[str, np.ndarray] = field(default_factory=dict)
