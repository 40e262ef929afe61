"""Do the camera images carry the motion? A small CNN on raw pixels of the current and future frames.

``python -m training.pixel_study --train DATA [DATA ...] --val DATA --horizons 1 2 3 [--size 80 144]``

The pixel-level counterpart of :mod:`training.ik_study`: the same question (can the trajectory be
read from the current frame and the real future frames alone, with no ego status?) asked one step
earlier, before any encoder. A convolutional regressor, shared by the cameras, sees the current
frame and the F future frames of a camera stacked on the channel axis, at the model's input size
(or any other); its per-camera features are concatenated and an MLP regresses the T waypoints
(L1 on metres / 10). It is trained on the training folders and planned on held-out frames with
the real future frames ("oracle") and with the current frame repeated ("static"); the
constant-speed line is the reference. If a CNN on pixels cannot beat the constant-speed line
either, the images at that size lose the motion, not the tokens; if it can, the tokens do.

Prints one JSON object (also written to ``--out``) with ``l2[mode]["l2_1s" | "l2_2s" | "l2_3s"]``
for mode in oracle / static / constant_speed, the configuration and the timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TARGET_SCALE_M = 10.0


class PixelMotionNet(nn.Module):
    """``forward(frames uint8 [B, C, 1 + F, 3, H, W]) -> [B, T, 2]`` waypoints (m).

    Per camera: the 1 + F frames stacked as 3 (1 + F) channels, four stride-2 convolutions
    (32, 64, 96, 128 channels, GELU); the C feature maps are flattened, concatenated and read by a
    two-layer MLP.
    """

    def __init__(self, num_cameras: int, num_frames: int, image_size: tuple[int, int], num_waypoints: int) -> None:
        super().__init__()
        chans = [3 * num_frames, 32, 64, 96, 128]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(a, b, k, stride=2, padding=k // 2), nn.GELU()]
        self.cnn = nn.Sequential(*layers)
        with torch.no_grad():
            size = self.cnn(torch.zeros(1, chans[0], *image_size)).numel()
        self.num_waypoints = num_waypoints
        self.head = nn.Sequential(nn.Linear(num_cameras * size, 256), nn.GELU(), nn.Linear(256, num_waypoints * 2))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, c, nf, ch, h, w = frames.shape
        x = frames.float().div(255.0).reshape(b * c, nf * ch, h, w)
        feats = self.cnn(x).reshape(b, -1)  # [B, C * features]
        return self.head(feats).view(b, self.num_waypoints, 2) * TARGET_SCALE_M


def episode_frames(ep: Any, cameras: Sequence[int], image_size: tuple[int, int]) -> np.ndarray:
    """uint8 [N, C, 3, H, W]: every frame of an episode as the model's preprocessing gives it."""
    from training.dataset import frame_images

    return np.stack([frame_images(ep, f, cameras, image_size) for f in range(ep.num_frames)])


class PixelSamples:
    """The samples of :class:`training.dataset.DrivingDataset` (same index and labels) as stacks of
    the current and future frames' pixels, decoded once."""

    def __init__(self, episodes: Sequence[Any], image_size: tuple[int, int], horizons: Sequence[float],
                 max_frames: int | None) -> None:
        from training.dataset import DrivingDataset

        self.ds = DrivingDataset(episodes, image_size, max_frames=max_frames, horizon_s=list(horizons),
                                 cache_images=False, with_boxes=False)
        self.frames = [episode_frames(ep, ids, image_size) for ep, ids in zip(self.ds.episodes, self.ds.camera_ids)]

    def __len__(self) -> int:
        return len(self.ds)

    def batch(self, indices: Sequence[int], static: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(frames uint8 [B, C, 1 + F, 3, H, W], trajectory [B, T, 2] m, speed [B] m/s)."""
        stacks, trajs, speeds = [], [], []
        for i in indices:
            e, f = int(self.ds.index.episodes[i]), int(self.ds.index.frames[i])
            offs = self.ds.future_offsets[e]
            ids = [f] + [f if static else f + o for o in offs]
            stacks.append(self.frames[e][ids].transpose(1, 0, 2, 3, 4))  # [C, 1 + F, 3, H, W]
            a = self.ds.episodes[e].arrays
            trajs.append(a["expert_plan"][f] if self.ds.index.use_plan[i] else a["trajectory"][f])
            speeds.append(a["speed"][f])
        return (torch.from_numpy(np.stack(stacks)), torch.from_numpy(np.stack(trajs).astype(np.float32)),
                torch.from_numpy(np.asarray(speeds, np.float32)))


def run_study(train_dirs: Sequence[str], val_dir: str, horizons: Sequence[float], image_size: tuple[int, int], *,
              steps: int = 1500, batch_size: int = 32, lr: float = 1e-3, seed: int = 0, max_val: int = 512,
              max_train: int | None = None, log=print) -> dict[str, Any]:
    """Train the pixel regressor on real future frames and measure oracle / static L2 (module doc)."""
    from training.ik_study import constant_speed_plan, study_step
    from training.manifest import scan_dataset
    from training.metrics import l2_at

    t0 = time.perf_counter()
    train = PixelSamples([e for d in train_dirs for e in scan_dataset(d).episodes], image_size, horizons, max_train)
    val = PixelSamples(scan_dataset(val_dir).episodes, image_size, horizons, max_val)
    decode_s = time.perf_counter() - t0
    log(f"train {len(train)} / val {len(val)} samples; frames decoded in {decode_s:.0f} s")
    torch.manual_seed(seed)
    ncam = len(train.ds.camera_ids[0])
    net = PixelMotionNet(ncam, 1 + len(horizons), image_size, train.ds.num_waypoints)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    t1 = time.perf_counter()
    net.train()
    for step in range(steps):
        frames, traj, _ = train.batch(torch.randint(0, len(train), (batch_size,), generator=gen).tolist())
        study_step(opt, F.smooth_l1_loss(net(frames) / TARGET_SCALE_M, traj / TARGET_SCALE_M), lr, step, steps, log)
    train_s = time.perf_counter() - t1
    net.eval()
    plans: dict[str, list[np.ndarray]] = {"oracle": [], "static": []}
    labels, speeds = [], []
    with torch.inference_mode():
        for start in range(0, len(val), 64):
            idx = list(range(start, min(start + 64, len(val))))
            for mode in plans:
                frames, traj, speed = val.batch(idx, static=mode == "static")
                plans[mode].append(net(frames).numpy())
            labels.append(traj.numpy())
            speeds.append(speed.numpy())
    gt = np.concatenate(labels)
    dt = train.ds.episodes[0].meta.waypoint_dt
    result = {name: l2_at(np.concatenate(p), gt, [1.0, 2.0, 3.0], dt) for name, p in plans.items()}
    result["constant_speed"] = l2_at(constant_speed_plan(np.concatenate(speeds), gt.shape[1], dt), gt, [1.0, 2.0, 3.0], dt)
    return {"horizons_s": list(horizons), "image_size": list(image_size), "steps": steps, "batch_size": batch_size,
            "parameters": sum(p.numel() for p in net.parameters()), "train_samples": len(train),
            "val_samples": len(val), "decode_s": round(decode_s, 1), "train_s": round(train_s, 1),
            "s_per_step": round(train_s / max(steps, 1), 3), "l2": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pixel_study", description=__doc__.split("\n")[0])
    parser.add_argument("--train", nargs="+", required=True, help="training dataset folder(s)")
    parser.add_argument("--val", required=True, help="held-out dataset folder")
    parser.add_argument("--horizons", nargs="+", type=float, default=[1.0, 2.0, 3.0], help="future horizons (s)")
    parser.add_argument("--size", nargs=2, type=int, default=[80, 144], metavar=("H", "W"), help="image size per camera")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-train", type=int, default=None, help="evenly strided subset of the training samples")
    parser.add_argument("--max-val", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run_study(args.train, args.val, args.horizons, tuple(args.size), steps=args.steps,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed, max_val=args.max_val,
                       max_train=args.max_train, log=lambda m: print(m, file=sys.stderr, flush=True))
    from training.ik_study import emit_result

    emit_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
