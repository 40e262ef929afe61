"""Critical-frame classification and oversampling (training.critical_frames, DataConfig.critical)."""

import dataclasses

import numpy as np
import pytest

from training.config import DataConfig, from_dict, load_config
from training.critical_frames import KINDS, CriticalFrameConfig, classify, critical_repeats


def _straight(speeds_mps):
    """[T, 2] a path along x whose segment k is driven at speeds_mps[k] (0.5 s waypoints)."""
    steps = np.asarray(speeds_mps, dtype=np.float64) * 0.5
    return np.stack([np.cumsum(steps), np.zeros_like(steps)], axis=-1)


def _turn(side, heading_deg, lateral_m, step=2.0):
    """[6, 2] a path that drifts ``lateral_m`` to ``side`` and ends heading ``heading_deg``."""
    pts = np.zeros((6, 2))
    pts[:, 0] = step * np.arange(1, 7)
    pts[:, 1] = side * lateral_m * (np.arange(1, 7) / 6.0) ** 2
    h = np.radians(heading_deg)
    pts[-1] = pts[-2] + step * np.array([np.cos(h), side * np.sin(h)])
    return pts


def test_classify_finds_each_kind_and_only_it():
    cfg = CriticalFrameConfig()
    traj = np.stack([
        _straight([8] * 6),               # cruising
        _straight([8, 7, 5, 3, 1.5, 0.5]),  # braking
        _straight([0.5, 1, 2, 3, 4, 5]),  # driving off from a stop
        _straight([0.0] * 6),             # standing
        _turn(+1, 60.0, 6.0, step=3.0),              # right turn
        _turn(-1, 5.0, 3.2, step=4.0),               # lane change to the left, parallel again
        _turn(+1, 5.0, 1.0, step=4.0),               # lane keeping with a small drift
    ])
    speed = np.array([8.0, 8.0, 0.0, 0.0, 6.0, 8.0, 8.0])
    kinds = classify(traj, speed, cfg)
    assert set(kinds) == set(KINDS)
    assert kinds["brake"].tolist() == [False, True, False, False, False, False, False]
    assert kinds["start"].tolist() == [False, False, True, False, False, False, False]
    assert kinds["turn"].tolist() == [False, False, False, False, True, False, False]
    assert kinds["lane_change"].tolist() == [False, False, False, False, False, True, False]
    repeats = critical_repeats(traj, speed, CriticalFrameConfig(repeat=3, kinds=["brake", "turn"]))
    assert repeats.tolist() == [1, 3, 1, 1, 3, 1, 1]
    assert critical_repeats(traj, speed, cfg).tolist() == [1] * 7  # repeat 1: off


def test_bad_critical_settings_are_named():
    with pytest.raises(ValueError, match="kinds"):
        CriticalFrameConfig(kinds=["swerve"])
    with pytest.raises(ValueError, match="repeat"):
        CriticalFrameConfig(repeat=0)
    with pytest.raises(ValueError, match="brake_ratio"):
        CriticalFrameConfig(brake_ratio=1.5)
    with pytest.raises(ValueError, match="speed"):
        classify(np.zeros((2, 6, 2)), np.zeros(3), CriticalFrameConfig())
    cfg = from_dict(DataConfig, {"train_dir": "d", "critical": {"repeat": 2, "kinds": ["start"]}})
    assert cfg.critical == CriticalFrameConfig(repeat=2, kinds=["start"])


def test_ablation_arms_differ_only_in_the_critical_repeat():
    """The committed ablation (docs/training.md, section 2) is a controlled one: both arms are the
    shipped IK model's own training config, fine-tuned from it, and differ in nothing but the repeat
    (and where they write)."""
    off = load_config("training/configs/ablation_critical_off.yaml")
    x3 = load_config("training/configs/ablation_critical_x3.yaml")
    shipped = load_config("weights/ik-tiny/training/config.yaml")
    assert (off.data.critical.repeat, x3.data.critical.repeat) == (1, 3)
    assert off.model.init_from == x3.model.init_from == "weights/ik-tiny"
    same = dataclasses.replace(x3, data=dataclasses.replace(x3.data, critical=off.data.critical),
                               log=dataclasses.replace(x3.log, output_dir=off.log.output_dir))
    assert same == off
    assert off.log.output_dir != x3.log.output_dir
    assert off.model.overrides == shipped.model.overrides
    assert off.optim.lr == shipped.optim.lr and off.optim.batch_size == shipped.optim.batch_size
    assert off.model.kind == shipped.model.kind == "ik"
    # Everything else is the shipped config: its data, start, length, logging and the unused
    # stage-(a) section are the only settings the arm changes.
    as_arm = dataclasses.replace(
        shipped, pretrain=off.pretrain,
        data=dataclasses.replace(shipped.data, train_dir=off.data.train_dir, extra_train_dirs=off.data.extra_train_dirs,
                                 val_dir=off.data.val_dir),
        model=dataclasses.replace(shipped.model, init_from=off.model.init_from),
        optim=dataclasses.replace(shipped.optim, max_steps=off.optim.max_steps),
        log=dataclasses.replace(shipped.log, output_dir=off.log.output_dir, eval_every=off.log.eval_every,
                                save_every=off.log.save_every))
    assert as_arm == off
