"""The training loop shared by both stages, on HF ``accelerate`` (CPU, one GPU or several).

A stage is a :class:`Task`: it owns the module being trained, turns collated samples into the
module's input, evaluates on validation samples and saves / loads the module's weights. The
:class:`Trainer` owns everything else: optimizer (AdamW on parameters with ``requires_grad``),
learning-rate schedule, deterministic data order, per-step seeding, logging (CSV, TensorBoard when
installed), validation, checkpoints and resume.

Determinism: the samples of step ``s`` are a pure function of (seed, s) (an epoch-wise permutation
stream), and every step re-seeds torch's global RNG and the generator handed to the loss from
(seed, s, process index). So a run resumed from a checkpoint at step ``s`` continues exactly as the
uninterrupted run would (same batches, same noise, same optimizer state).

Outputs in ``log.output_dir``: ``train_log.csv`` (one row per ``log_every`` steps), ``val_log.csv``
(one row per validation), ``tb/`` (TensorBoard), ``checkpoints/step_<N>/``, ``final/`` (the trained
module) and ``result.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from training.checkpoint import list_checkpoints, load_optimizer, load_trainer_state, save_checkpoint
from training.config import LogConfig, OptimConfig, to_dict
from training.dataset import collate


class Task(Protocol):
    """One training stage (see module doc)."""

    module: nn.Module  # forward(batch, generator) -> (loss scalar tensor, {name: float tensor})

    def make_batch(self, samples: dict[str, torch.Tensor], device: torch.device) -> Any:
        """Collated samples -> the first argument of ``module.forward`` (on ``device``)."""
        ...

    def evaluate(self, module: nn.Module, val_dataset: Any, device: torch.device) -> dict[str, float]:
        """Validation metrics of the (unwrapped) module."""
        ...

    def save(self, module: nn.Module, path: Path) -> None:
        """Save the module's weights (and config) to folder ``path`` (safetensors)."""
        ...

    def load(self, module: nn.Module, path: Path) -> None:
        """Load weights saved by :meth:`save` into ``module`` (strict)."""
        ...


def lr_at(step: int, cfg: OptimConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine or constant."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))


class BatchStream:
    """Sample indices of each step: an endless stream of per-epoch permutations of ``range(n)``.

    Step ``s`` of process ``rank`` (of ``world``) reads stream positions
    ``[(s * world + rank) * B, (s * world + rank + 1) * B)``; epoch ``e``'s permutation is seeded
    by (seed, e), so indices depend only on (seed, s, rank).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n <= 0:
            raise ValueError("the training dataset has no samples")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        start = (step * self.world + self.rank) * self.batch_size
        out = []
        for q in range(start, start + self.batch_size):
            out.append(int(self._perm(q // self.n)[q % self.n]))
        return out


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of optimizer step ``step`` on process ``rank``."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


class CsvLog:
    """A CSV file of dict rows; columns grow as new keys appear (file rewritten atomically)."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.is_file() and keep_until_step is not None:
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if float(r.get("step", 0)) <= keep_until_step]

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``result.json``)."""

    output_dir: str
    final_step: int
    final_model: str
    wall_s: float
    resumed_from: str | None = None
    last_train: dict[str, float] = field(default_factory=dict)
    last_val: dict[str, float] = field(default_factory=dict)


def _floatify(terms: dict[str, Any]) -> dict[str, float]:
    return {k: float(v.detach().float().mean()) if torch.is_tensor(v) else float(v) for k, v in terms.items()}


class Trainer:
    """Runs a :class:`Task` for ``optim.max_steps`` steps (see module doc).

    Args:
        task: the stage.
        train_dataset: indexable samples (``training.dataset.DrivingDataset``).
        val_dataset: validation samples or None.
        optim, log: configs; ``seed``; ``run_config``: the full config, stored in checkpoints.
        accelerator: an ``accelerate.Accelerator`` (built by the caller, so tests can pass ``cpu=True``).
    """

    def __init__(self, task: Task, train_dataset: Any, val_dataset: Any, optim: OptimConfig, log: LogConfig,
                 seed: int, accelerator: Any, run_config: Any = None) -> None:
        self.task, self.train_dataset, self.val_dataset = task, train_dataset, val_dataset
        self.optim_cfg, self.log_cfg, self.seed = optim, log, seed
        self.accelerator = accelerator
        self.run_config = to_dict(run_config) if run_config is not None else None
        self.out = Path(log.output_dir)

    def _resolve_resume(self, resume: str | None) -> Path | None:
        if resume is None:
            return None
        if resume == "auto":
            found = list_checkpoints(self.out / "checkpoints")
            return found[-1] if found else None
        path = Path(resume)
        load_trainer_state(path)  # raises with a clear message if it is not a checkpoint
        return path

    def run(self, resume: str | None = None) -> TrainResult:
        """Train; ``resume``: a checkpoint folder, "auto" (latest in output_dir, if any) or None."""
        acc = self.accelerator
        device = acc.device
        self.out.mkdir(parents=True, exist_ok=True)
        module = self.task.module
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the task's module has no trainable parameters")
        opt = self.optim_cfg
        optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
        start = 0
        ckpt = self._resolve_resume(resume)
        if ckpt is not None:
            self.task.load(module, ckpt / "model")
            load_optimizer(ckpt, optimizer)
            start = int(load_trainer_state(ckpt)["step"])
        wrapped, optimizer = acc.prepare(module, optimizer)
        stream = BatchStream(len(self.train_dataset), opt.batch_size, self.seed, acc.process_index, acc.num_processes)
        is_main = acc.is_main_process
        train_log = CsvLog(self.out / "train_log.csv", keep_until_step=start) if is_main else None
        val_log = CsvLog(self.out / "val_log.csv", keep_until_step=start) if is_main else None
        tb = self._tensorboard() if is_main else None
        t0 = time.perf_counter()
        last_train: dict[str, float] = {}
        last_val: dict[str, float] = {}
        window_t, window_n = time.perf_counter(), 0
        for step in range(start, opt.max_steps):
            lr = lr_at(step, opt)
            for group in optimizer.param_groups:
                group["lr"] = lr
            seed = step_seed(self.seed, step, acc.process_index)
            torch.manual_seed(seed)
            gen = torch.Generator(device=device).manual_seed(seed)
            samples = collate([self.train_dataset[i] for i in stream.indices(step)])
            batch = self.task.make_batch(samples, device)
            wrapped.train()
            with acc.autocast():
                loss, terms = wrapped(batch, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at step {step}")
            acc.backward(loss)
            grad_norm = acc.clip_grad_norm_(params, opt.grad_clip) if opt.grad_clip > 0 else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            window_n += opt.batch_size * acc.num_processes
            if is_main and (done % self.log_cfg.log_every == 0 or done == opt.max_steps or done == start + 1):
                now = time.perf_counter()
                last_train = {"loss": float(loss.detach()), **_floatify(terms)}
                if grad_norm is not None:
                    last_train["grad_norm"] = float(grad_norm)
                row = {"step": done, "lr": lr, **last_train, "samples_per_s": window_n / max(now - window_t, 1e-9),
                       "elapsed_s": now - t0}
                train_log.append(row)
                if tb is not None:
                    for k, v in row.items():
                        if k != "step":
                            tb.add_scalar(f"train/{k}", v, done)
                window_t, window_n = now, 0
            if self.val_dataset is not None and (done % self.log_cfg.eval_every == 0 or done == opt.max_steps):
                acc.wait_for_everyone()
                if is_main:
                    last_val = self.task.evaluate(acc.unwrap_model(wrapped), self.val_dataset, device)
                    val_log.append({"step": done, **last_val})
                    if tb is not None:
                        for k, v in last_val.items():
                            tb.add_scalar(f"val/{k}", v, done)
            if done % self.log_cfg.save_every == 0 or done == opt.max_steps:
                acc.wait_for_everyone()
                if is_main:
                    save_checkpoint(
                        self.out / "checkpoints", done, lambda p: self.task.save(acc.unwrap_model(wrapped), p),
                        optimizer,
                        {"config": self.run_config, "train": last_train, "val": last_val, "seed": self.seed},
                        keep_last=self.log_cfg.keep_last,
                    )
        acc.wait_for_everyone()
        final = self.out / "final"
        result = TrainResult(str(self.out), opt.max_steps, str(final), time.perf_counter() - t0,
                             str(ckpt) if ckpt else None, last_train, last_val)
        if is_main:
            self.task.save(acc.unwrap_model(wrapped), final)
            (self.out / "result.json").write_text(json.dumps(result.__dict__, indent=2, sort_keys=True))
        if tb is not None:
            tb.close()
        return result

    def _tensorboard(self) -> Any:
        if not self.log_cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(log_dir=str(self.out / "tb"))
