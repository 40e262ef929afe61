"""The trainer loop, its checkpoints and an exact resume, with a small stand-in task."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn

from training.checkpoint import list_checkpoints, load_trainer_state, optimizer_state_from_files, optimizer_state_to_files
from training.config import LogConfig, OptimConfig
from training.dataset import DrivingDataset
from training.manifest import scan_dataset
from training.synthetic import write_synthetic_dataset
from training.trainer import BatchStream, Trainer, lr_at


class _Regressor(nn.Module):
    """Images + speed -> trajectory, with dropout and noise so RNG handling matters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8 + 1, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 12))

    def forward(self, batch, generator=None):
        x = torch.cat([batch["images"].flatten(1), batch["speed"][:, None]], 1)
        noise = torch.randn(batch["trajectory"].shape, generator=generator)
        pred = self.net(x).view(-1, 6, 2)
        loss = ((pred - batch["trajectory"] / 10 + 0.01 * noise) ** 2).mean()
        return loss, {"mse": loss.detach()}


class _Task:
    def __init__(self) -> None:
        self.module = _Regressor()

    def make_batch(self, samples, device):
        return {k: v.to(device) for k, v in samples.items()}

    def evaluate(self, module, val_dataset, device):
        return {"n": float(len(val_dataset))}

    def save(self, module, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path / "w.safetensors"))

    def load(self, module, path: Path) -> None:
        module.load_state_dict(load_file(str(path / "w.safetensors")), strict=True)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = write_synthetic_dataset(tmp_path_factory.mktemp("data"), num_episodes=2, num_ticks=100, image_size=(8, 8))
    return DrivingDataset(scan_dataset(root).episodes, image_size=(8, 8))


def _run(dataset, out, max_steps, resume=None, save_every=3):
    torch.manual_seed(0)
    task = _Task()
    optim = OptimConfig(lr=1e-2, warmup_steps=2, max_steps=max_steps, batch_size=4)
    log = LogConfig(output_dir=str(out), log_every=1, eval_every=3, save_every=save_every, keep_last=5, tensorboard=False)
    trainer = Trainer(task, dataset, dataset, optim, log, seed=3, accelerator=Accelerator(cpu=True))
    return trainer.run(resume=resume), task.module


def test_two_steps_write_logs_and_checkpoint(dataset, tmp_path):
    result, _ = _run(dataset, tmp_path / "run", max_steps=2, save_every=100)
    assert result.final_step == 2
    rows = list(csv.DictReader(open(tmp_path / "run" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2] and float(rows[0]["loss"]) > 0
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [c.name for c in ckpts] == ["step_0000002"]
    assert load_trainer_state(ckpts[0])["step"] == 2
    assert (tmp_path / "run" / "final" / "w.safetensors").is_file()


def test_resume_continues_at_step_with_identical_state(dataset, tmp_path):
    _, full = _run(dataset, tmp_path / "full", max_steps=6)
    # Resume the same run from its step-3 checkpoint in a fresh folder: steps 4-6 must repeat exactly.
    ckpt = tmp_path / "full" / "checkpoints" / "step_0000003"
    result, resumed = _run(dataset, tmp_path / "part", max_steps=6, resume=str(ckpt))
    assert result.resumed_from == str(ckpt) and result.final_step == 6
    rows = list(csv.DictReader(open(tmp_path / "part" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [4, 5, 6]
    full_rows = list(csv.DictReader(open(tmp_path / "full" / "train_log.csv")))
    assert [r["loss"] for r in rows] == [r["loss"] for r in full_rows[3:]]
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    # Without the checkpoint's state the weights differ (the test can fail).
    _, fresh = _run(dataset, tmp_path / "fresh", max_steps=3)
    assert not all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), fresh.state_dict().values()))


def test_resume_auto_and_bad_path(dataset, tmp_path):
    _run(dataset, tmp_path / "r", max_steps=3)
    result, _ = _run(dataset, tmp_path / "r", max_steps=4, resume="auto")
    assert result.resumed_from.endswith("step_0000003")
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        _run(dataset, tmp_path / "r2", max_steps=2, resume=str(tmp_path))


def test_optimizer_state_round_trip_without_pickle():
    p = nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.8, 0.9))
    p.sum().backward()
    opt.step()
    tensors, rest = optimizer_state_to_files(opt.state_dict())
    back = optimizer_state_from_files(tensors, rest)
    opt2 = torch.optim.AdamW([nn.Parameter(p.detach().clone())], lr=0.5)
    opt2.load_state_dict(back)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["betas"] == (0.8, 0.9) and s2["param_groups"][0]["lr"] == 0.1
    for k in s1["state"][0]:
        assert torch.equal(s1["state"][0][k], s2["state"][0][k])


def test_schedule_and_batch_stream():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.25) and lr_at(3, cfg) == pytest.approx(1.0)
    assert lr_at(14, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(0.55)
    s = BatchStream(10, 4, seed=1)
    epoch0 = s.indices(0) + s.indices(1) + s.indices(2)[:2]
    assert sorted(epoch0) == list(range(10))
    assert BatchStream(10, 4, seed=1).indices(7) == s.indices(7)
    a, b = BatchStream(10, 2, 1, rank=0, world=2), BatchStream(10, 2, 1, rank=1, world=2)
    assert sorted(a.indices(0) + b.indices(0)) == sorted(s.indices(0))
