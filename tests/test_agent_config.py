"""Agent YAML config: typed loading, relative paths, the Bench2Drive "+save_name" form, errors."""

from pathlib import Path

import pytest

from agent.agent_config import AgentConfig, ConfigError, load_agent_config, split_setup_argument
from agent.controller import ControllerConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "agent" / "configs"


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name,rig", [("sandbox_tiny.yaml", "carla-3cam"), ("carla_3cam.yaml", "carla-3cam")])
def test_example_configs_load(name, rig):
    config = load_agent_config(CONFIG_DIR / name)
    assert isinstance(config, AgentConfig)
    assert config.rig == rig
    assert config.model.is_absolute()
    assert isinstance(config.controller, ControllerConfig)


def test_model_path_is_relative_to_the_yaml_file(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    path = write(sub, "model: ../weights/m\nsave_path: out\n")
    config = load_agent_config(path)
    assert config.model == (tmp_path / "weights" / "m").resolve()
    assert config.save_path == (sub / "out").resolve()


def test_values_are_typed_and_nested_sections_parsed(tmp_path):
    path = write(tmp_path, """
model: m
device: cuda:1
planning_hz: 20
num_inference_steps: 3
num_samples: 4
controller: {turn_kp: 1, speed_window: 10}
creep: {stuck_ticks: 100, recheck_ticks: 10}
route: {min_spacing_m: 0}
debug_frames: true
""")
    config = load_agent_config(path)
    assert config.device == "cuda:1"
    assert config.planning_hz == 20.0 and isinstance(config.planning_hz, float)
    assert config.controller.turn_kp == 1.0 and config.controller.speed_window == 10
    assert config.controller.speed_kp == ControllerConfig().speed_kp  # untouched defaults stay
    assert config.creep.stuck_ticks == 100 and config.route.min_spacing_m == 0.0
    assert config.debug_frames is True
    assert config.num_samples == 4


@pytest.mark.parametrize(
    "text,key",
    [
        ("model: m\nplaning_hz: 10\n", "planing_hz"),
        ("model: m\ncreep: {stuk_ticks: 3}\n", "creep.stuk_ticks"),
        ("model: m\ncontroller: {turn_kq: 1.0}\n", "controller.turn_kq"),
        ("model: m\nsafety: {max_speed: 3}\n", "safety.max_speed"),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ": unknown key"):
        load_agent_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "text,key",
    [
        ("model: m\nplanning_hz: fast\n", "planning_hz"),
        ("model: m\ndebug_frames: 1\n", "debug_frames"),
        ("model: m\nseed: 1.5\n", "seed"),
        ("model: m\ncreep: {stuck_ticks: true}\n", "creep.stuck_ticks"),
        ("model: m\ncontroller: {turn_window: 2.5}\n", "controller.turn_window"),
        ("model: [a, b]\n", "model"),
        ("model: m\nroute: 3\n", "route"),
    ],
)
def test_wrong_types_are_errors_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_agent_config(write(tmp_path, text))


@pytest.mark.parametrize(
    "text,needle",
    [
        ("device: cpu\n", "model"),
        ("model: m\ndevice: gpu0\n", "device"),
        ("model: m\nrig: five-cams\n", "rig"),
        ("model: m\nplanning_hz: 0\n", "planning_hz"),
        ("model: m\nnum_samples: 0\n", "num_samples"),
        ("model: m\nslowest_fraction: 0\n", "slowest_fraction"),
        ("model: m\nslowest_fraction: 1.5\n", "slowest_fraction"),
        ("model: m\nacceleration_source: gps\n", "acceleration_source"),
        ("model: m\nsafety: {max_speed_mps: -1}\n", "safety.max_speed_mps"),
        ("model: m\ncontroller: {max_throttle: 2.0}\n", "max_throttle"),
    ],
)
def test_invalid_values_are_errors_naming_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=needle):
        load_agent_config(write(tmp_path, text))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_agent_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="YAML"):
        load_agent_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_agent_config(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    "argument,expected",
    [
        ("/x/agent.yaml", ("/x/agent.yaml", None)),
        ("/x/agent.yaml+RouteScenario_3_rep0_Town12_X_1_01_01", ("/x/agent.yaml", "RouteScenario_3_rep0_Town12_X_1_01_01")),
        ("/x/agent.yaml+first+second", ("/x/agent.yaml", "second")),  # Bench2Drive appends per route
        ("/x/agent.yaml+", ("/x/agent.yaml", None)),
    ],
)
def test_split_setup_argument(argument, expected):
    assert split_setup_argument(argument) == expected
