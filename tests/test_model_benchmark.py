"""The latency benchmark's helpers and CLI (a few runs only)."""

from __future__ import annotations

import pytest
import torch

from agent.model.benchmark import main, module_parameters, percentile
from agent.model import build_preset


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 90) == pytest.approx(9.0)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_module_parameters_cover_the_model():
    model = build_preset("tiny")
    counts = module_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["vision"] + counts["vla"] + counts["ik_net"] == counts["total"]
    assert "  vision.backbone" in counts and "  vla.reader.llm" in counts
    assert 1_000_000 < counts["total"] < 10_000_000  # "a few million"


def test_cli_prints_stages_and_parameters(capsys):
    torch.set_num_threads(1)
    assert main(["--preset", "tiny", "--runs", "2", "--warmup", "1", "--steps", "2", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    for word in ("encoder", "vla", "ik_net", "ik_net/step", "total", "parameters", "torch"):
        assert word in text


def test_cli_with_averaged_samples(capsys):
    torch.set_num_threads(1)
    assert main(["--preset", "tiny", "--runs", "2", "--warmup", "0", "--steps", "2", "--samples", "4", "--threads", "1"]) == 0
    assert "mean of 4 diffusion draws" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--samples", "0"])
