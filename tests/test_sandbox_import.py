"""Importing the sandbox package is cheap: no pygame, no highway-env, no display."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_pygame():
    code = (
        "import os, sys; import carla_eval.sandbox as s; "
        "assert 'pygame' not in sys.modules and 'highway_env' not in sys.modules, sorted(m for m in sys.modules if 'pygame' in m); "
        "assert 'SDL_VIDEODRIVER' not in os.environ; "
        "assert 'SandboxBackend' in s.__all__; print('ok')"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "SDL_VIDEODRIVER"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_lazy_attribute_access():
    import carla_eval.sandbox as s

    assert int(s.RoadOption.LEFT) == 1
    assert s.SandboxConfig().dt == 0.05
    try:
        s.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_rendering_sets_offscreen_driver_not_dummy():
    code = (
        "import os; os.environ['SDL_VIDEODRIVER'] = 'dummy'; "
        "from carla_eval.sandbox.towns import get_town; from carla_eval.sandbox.map_index import get_map_index; "
        "from carla_eval.sandbox.render import TopDownCamera, TopDownCameraSpec; "
        "cam = TopDownCamera(TopDownCameraSpec(64, 64, 90.0, 20.0), get_map_index(get_town('intersection'))); "
        "img = cam.render(-50.0, 2.0, 0.0, []); "
        "assert os.environ['SDL_VIDEODRIVER'] == 'offscreen'; "
        "assert img.shape == (64, 64, 4) and (img[..., :3] > 200).any(), 'lane markings drawn'; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("ok")
