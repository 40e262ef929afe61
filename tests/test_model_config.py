"""Configs of the model family: validation, JSON round trip, strict keys, presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent.model import (
    FutureStateConfig,
    IKDriveConfig,
    IKNetConfig,
    ShortcutConfig,
    TrajectoryConfig,
    VisionConfig,
    config_from_dict,
    load_config,
    preset_config,
)


@pytest.fixture(scope="module")
def tiny() -> IKDriveConfig:
    return preset_config("tiny")


def test_tiny_preset_matches_the_documented_sizes(tiny):
    assert tiny.num_cameras == 1 and tiny.image_size == (128, 128)
    assert tiny.vision.patch_size == 16 and tiny.vision.tokens_per_frame == 64
    assert tiny.vision.hidden_size == 128 and tiny.vision.backbone["num_hidden_layers"] == 4
    llm = tiny.llm.backbone
    assert (llm["hidden_size"], llm["num_hidden_layers"], llm["num_attention_heads"], llm["num_key_value_heads"]) == (128, 4, 4, 2)
    assert (tiny.ik_net.hidden_size, tiny.ik_net.num_layers) == (128, 4)
    assert tiny.num_waypoints == 6 and tiny.waypoint_dt == 0.5
    assert tiny.ik_net.num_inference_steps == 3 and tiny.future.horizon_s == 3.0
    assert tiny.future.num_queries == 64


def test_tiny_preset_overrides_cameras_and_image_size():
    cfg = preset_config("tiny", num_cameras=3, image_size=(96, 160))
    assert cfg.image_size == (96, 160)
    assert cfg.vision.tokens_per_camera == 6 * 10
    assert cfg.future.num_queries == 3 * 60


def test_unknown_preset_override_is_an_error():
    with pytest.raises(TypeError, match="num_camera"):
        preset_config("tiny", num_camera=3)
    with pytest.raises(ValueError, match="preset"):
        preset_config("huge")


def test_json_round_trip_is_exact(tiny, tmp_path):
    path = tmp_path / "config.json"
    tiny.save(path)
    again = load_config(path)
    assert again == tiny
    assert again.to_dict() == tiny.to_dict()
    shortcut = preset_config("tiny", model_type="shortcut")
    assert isinstance(shortcut, ShortcutConfig)
    assert config_from_dict(json.loads(shortcut.to_json_string())) == shortcut


def test_unknown_keys_are_errors_at_every_level(tiny):
    data = tiny.to_dict()
    bad_top = dict(data, extra=1)
    with pytest.raises(ValueError, match="extra"):
        config_from_dict(bad_top)
    for section in ("vision", "ik_net", "trajectory", "future"):
        bad = json.loads(json.dumps(data))
        bad[section]["typo_field"] = 1
        with pytest.raises(ValueError, match="typo_field"):
            config_from_dict(bad)
    bad = json.loads(json.dumps(data))
    bad["llm"]["backbone"]["hidden_sise"] = 64
    with pytest.raises(ValueError, match="hidden_sise"):
        config_from_dict(bad)


def test_unknown_model_type_is_an_error(tiny):
    with pytest.raises(ValueError, match="model_type"):
        config_from_dict(dict(tiny.to_dict(), model_type="diffusion_policy"))


def test_image_size_not_divisible_by_patch_names_the_field(tiny):
    with pytest.raises(ValueError, match="image_size.*W=130.*patch_size 16"):
        dataclasses.replace(tiny.vision, image_size=(128, 130))


def test_k_mismatch_names_the_field(tiny):
    with pytest.raises(ValueError, match="future.num_queries"):
        dataclasses.replace(tiny, future=FutureStateConfig(num_queries=60))


def test_steps_below_one_and_above_train_steps_raise():
    with pytest.raises(ValueError, match="num_inference_steps"):
        IKNetConfig(num_inference_steps=0)
    with pytest.raises(ValueError, match="num_inference_steps"):
        IKNetConfig(num_train_timesteps=10, num_inference_steps=11)


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: FutureStateConfig(loss="huber"), "loss"),
        (lambda: IKNetConfig(prediction_type="v_prediction"), "prediction_type"),
        (lambda: IKNetConfig(teacher_forcing="always"), "teacher_forcing"),
        (lambda: IKNetConfig(teacher_forcing_gt_prob=1.5), "teacher_forcing_gt_prob"),
        (lambda: IKNetConfig(hidden_size=130, num_heads=4), "num_heads"),
        (lambda: TrajectoryConfig(num_waypoints=0), "num_waypoints"),
        (lambda: TrajectoryConfig(waypoint_dt=-0.5), "waypoint_dt"),
        (lambda: FutureStateConfig(horizons_s=(0.0,)), "horizons_s"),
        (lambda: FutureStateConfig(horizons_s=(2.0, 1.0)), "horizons_s"),
        (lambda: FutureStateConfig(horizons_s=()), "horizons_s"),
        (lambda: FutureStateConfig(loss_weight=-1.0), "loss_weight"),
    ],
)
def test_bad_values_raise_naming_the_field(factory, field):
    with pytest.raises(ValueError, match=field):
        factory()


def test_vision_config_requires_known_backbone_keys(tiny):
    with pytest.raises(ValueError, match="patch_sizes"):
        VisionConfig(backbone={"hidden_size": 64, "patch_size": 16, "patch_sizes": 8})
    with pytest.raises(ValueError, match="num_cameras"):
        dataclasses.replace(tiny.vision, num_cameras=0)


def test_load_config_reports_invalid_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(path)
