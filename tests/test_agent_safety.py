"""Safety helpers, creep governor and plan reuse between ticks."""

import logging
import math

import numpy as np
import pytest

from agent.creep import CREEP, NORMAL, PROBE, CreepConfig, CreepGovernor
from agent.ego_frame import ego_to_world
from agent.odometry import Odometry, Pose2D, move_plan
from agent.safety import (SAFE_CONTROL, Control, RateLimitedWarner, SafetyConfig, apply_speed_limit,
                          sanitize_control)


@pytest.mark.parametrize(
    "raw,expected,ok",
    [
        (Control(0.5, 0.2, 0.0), Control(0.5, 0.2, 0.0), True),
        (Control(1.7, -3.0, 0.0), Control(1.0, -1.0, 0.0), True),
        (Control(-0.2, 0.0, 2.0), Control(0.0, 0.0, 1.0), True),
        (Control(0.6, 0.0, 0.4), Control(0.0, 0.0, 0.4), True),  # braking wins
        (Control(float("nan"), 0.0, 0.0), SAFE_CONTROL, False),
        (Control(0.2, float("inf"), 0.0), SAFE_CONTROL, False),
        (Control(0.2, 0.0, float("-inf")), SAFE_CONTROL, False),
    ],
)
def test_sanitize_control(raw, expected, ok):
    assert sanitize_control(raw) == (expected, ok)


def test_speed_limit():
    config = SafetyConfig(max_speed_mps=10.0, overspeed_brake=0.3, overspeed_margin_mps=2.0, max_throttle=0.8)
    assert apply_speed_limit(Control(1.0, 0.1, 0.0), 5.0, config) == Control(0.8, 0.1, 0.0)
    assert apply_speed_limit(Control(1.0, 0.1, 0.0), 11.0, config) == Control(0.0, 0.1, 0.0)
    assert apply_speed_limit(Control(1.0, 0.1, 0.0), 12.5, config) == Control(0.0, 0.1, 0.3)
    with pytest.raises(ValueError, match="max_speed_mps"):
        SafetyConfig(max_speed_mps=0.0)


def test_rate_limited_warner(caplog):
    now = [0.0]
    warner = RateLimitedWarner(logging.getLogger("test.warner"), interval_s=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.warner"):
        assert warner.warn("a", "first %d", 1)
        for _ in range(10):
            assert not warner.warn("a", "again")
        assert warner.warn("b", "other key")
        now[0] = 6.0
        assert warner.warn("a", "later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["first 1", "other key", "later (10 similar warnings held back)"]
    assert warner.total == 13


def test_creep_governor_probe_then_creep_then_reset():
    config = CreepConfig(stuck_ticks=5, creep_ticks=3, recheck_ticks=2, creep_throttle=0.4,
                         creep_max_speed_mps=2.0, hard_stop_distance_m=1.0)
    gov = CreepGovernor(config)
    modes = [gov.tick(0.0) for _ in range(5)]
    assert modes == [NORMAL] * 4 + [PROBE]
    moving_plan = np.array([[0.5, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert gov.decide(moving_plan)
    assert [gov.tick(0.0) for _ in range(2)] == [CREEP, CREEP]  # 3 creep ticks in all (decide tick + 2)
    assert gov.tick(0.0) == NORMAL and gov.stuck == 1
    assert gov.creep_control(0.3, 0.5) == Control(0.4, 0.3, 0.0)
    assert gov.creep_control(0.3, 2.5) == Control(0.0, 0.3, 0.0)


def test_creep_vetoed_by_a_hard_stop_probe_and_rechecked():
    gov = CreepGovernor(CreepConfig(stuck_ticks=5, recheck_ticks=2, hard_stop_distance_m=1.0))
    for _ in range(5):
        mode = gov.tick(0.0)
    assert mode == PROBE
    assert not gov.decide(np.array([[0.1, 0.0], [0.2, 0.0]]))  # the model still stops
    assert not gov.decide(None)  # a failed probe is a veto too
    assert gov.vetoes == 2 and gov.creeps == 0
    assert [gov.tick(0.0) for _ in range(2)] == [NORMAL, PROBE]  # probed again after recheck_ticks
    assert gov.tick(3.0) == NORMAL and gov.stuck == 0  # moving resets the counter


def test_creep_disabled_and_config_errors():
    gov = CreepGovernor(CreepConfig(enabled=False, stuck_ticks=1, recheck_ticks=1))
    assert all(gov.tick(0.0) == NORMAL for _ in range(10))
    with pytest.raises(ValueError, match="recheck_ticks"):
        CreepConfig(stuck_ticks=5, recheck_ticks=10)
    with pytest.raises(ValueError, match="creep_throttle"):
        CreepConfig(creep_throttle=1.5)


def test_odometry_integrates_a_turn():
    odo = Odometry()
    speed, yaw_rate, dt = 5.0, 0.2, 0.05
    for k in range(201):
        pose = odo.update(speed, k * dt * yaw_rate, k * dt)
    radius = speed / yaw_rate  # 25 m circle, clockwise (right turn) from (0, 0) heading +x
    expected = np.array([radius * math.sin(2.0), radius * (1 - math.cos(2.0))])
    assert np.allclose(pose.xy, expected, atol=0.05)


@pytest.mark.parametrize("dx,dy,dyaw", [(0.0, 0.0, 0.0), (1.5, 0.2, 0.1), (-2.0, 3.0, -2.0)])
def test_move_plan_keeps_world_points(dx, dy, dyaw):
    made = Pose2D(10.0, -4.0, 0.7)
    now = Pose2D(10.0 + dx, -4.0 + dy, 0.7 + dyaw)
    plan = np.array([[2.0, 0.1], [4.0, 0.5], [6.0, 1.2]])
    moved = move_plan(plan, made, now)
    assert np.allclose(ego_to_world(moved, now.xy, now.yaw), ego_to_world(plan, made.xy, made.yaw))
    if dx == dy == dyaw == 0.0:
        assert np.allclose(moved, plan)


def test_move_plan_straight_ahead_shifts_back():
    plan = np.array([[5.0, 0.0], [10.0, 0.0]])
    moved = move_plan(plan, Pose2D(0.0, 0.0, 0.0), Pose2D(1.0, 0.0, 0.0))
    assert np.allclose(moved, [[4.0, 0.0], [9.0, 0.0]])
