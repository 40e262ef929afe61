"""The import arrows run one way: training -> carla_eval -> agent -> agent.model; and the
subcommands ``training`` contributes to ``carla-eval`` arrive through entry points."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from carla_eval.commands import Command, CommandError, load_commands

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: Path) -> list[tuple[str, str]]:
    """(file, absolute module name) of every import statement under ``package``, at any depth
    (function-level imports included)."""
    out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [(str(path.relative_to(ROOT)), alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.append((str(path.relative_to(ROOT)), node.module))
    return out


@pytest.mark.parametrize("package, forbidden", [
    ("carla_eval", ("training",)),
    ("agent", ("training", "carla_eval")),
])
def test_a_package_never_imports_the_layers_above_it(package, forbidden):
    found = imported_modules(ROOT / package)
    assert len(found) > 20  # the scan reads the package
    bad = [(f, m) for f, m in found if m.split(".")[0] in forbidden]
    assert bad == []


def test_the_model_imports_nothing_of_the_agent_around_it():
    bad = [(f, m) for f, m in imported_modules(ROOT / "agent" / "model")
           if m.startswith("agent.") and not m.startswith("agent.model")]
    assert bad == []


def test_the_scan_sees_function_level_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    from training.x import y\n    import training\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [m for _, m in imported_modules(pkg)] == ["training.x", "training"]


def test_collect_and_probe_are_registered_by_training():
    commands = {c.name: c for c in load_commands(reserved=("run", "metrics", "export", "replay"))}
    assert {"collect", "probe"} <= set(commands)
    assert commands["collect"].run.__module__ == "training.cli_collect"
    assert commands["probe"].run.__module__ == "training.cli_probe"


def test_carla_eval_collect_help_runs_through_the_entry_point():
    out = subprocess.run([sys.executable, "-m", "carla_eval.cli", "collect", "--help"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "--ground-truth" in out.stdout


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    target: object = None
    error: Exception | None = None

    def load(self):
        if self.error is not None:
            raise self.error
        return self.target


def _command(name):
    return Command(name, f"{name} help", lambda parser: parser.add_argument("--x", type=int, default=1),
                   lambda args: 7)


def test_commands_are_sorted_and_validated():
    eps = [FakeEntryPoint("b", "m:B", _command("b")), FakeEntryPoint("a", "m:A", _command("a")),
           FakeEntryPoint("a", "m:A", _command("a"))]  # the same registration seen twice is one command
    assert [c.name for c in load_commands(entry_points=eps)] == ["a", "b"]
    with pytest.raises(CommandError, match="registered twice"):
        load_commands(entry_points=[FakeEntryPoint("a", "m:A", _command("a")), FakeEntryPoint("a", "n:A", _command("a"))])
    with pytest.raises(CommandError, match="built-in"):
        load_commands(reserved=("run",), entry_points=[FakeEntryPoint("run", "m:R", _command("run"))])
    with pytest.raises(CommandError, match="not a carla_eval.commands.Command named 'c'"):
        load_commands(entry_points=[FakeEntryPoint("c", "m:C", _command("other"))])
    with pytest.raises(CommandError, match="not a carla_eval.commands.Command"):
        load_commands(entry_points=[FakeEntryPoint("c", "m:C", object())])


def test_a_command_that_cannot_load_is_listed_and_fails_clearly(capsys):
    import argparse

    (cmd,) = load_commands(entry_points=[FakeEntryPoint("broken", "pkg.mod:COMMAND", error=ImportError("no module named pkg"))])
    assert "cannot be loaded" in cmd.help and "no module named pkg" in cmd.load_error
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    assert cmd.run(parser.parse_args([])) == 2
    err = capsys.readouterr().err
    assert "pkg.mod:COMMAND" in err and "no module named pkg" in err


def test_the_cli_runs_a_broken_command_to_its_message_whatever_the_arguments(monkeypatch, capsys):
    from carla_eval import cli, commands

    broken = FakeEntryPoint("broken", "pkg.mod:COMMAND", error=ImportError("no module named pkg"))
    monkeypatch.setattr(commands, "installed_entry_points", lambda: [broken])
    assert cli.main(["broken", "--routes", "x.xml"]) == 2
    assert "no module named pkg" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a known command with an unknown option: argparse's error
        cli.main(["metrics", "some_run", "--no-such-option"])
    assert exc.value.code == 2
