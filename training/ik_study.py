"""How much motion the frozen encoder's tokens carry: the IK net alone on cached ground-truth tokens.

``python -m training.ik_study --encoder DIR --train DATA [DATA ...] --val DATA --horizons 1 2 3``

The IK net (the model's own :class:`agent.model.IKNet` and diffusion loss) is trained with the
encoder's tokens of the REAL future frames (what a perfect VLA would predict) and then planned on
held-out frames twice, with the same diffusion noise: with those real-future tokens ("oracle"), and
with the current tokens repeated as the future ("static": a world that does not move). A
constant-speed line straight ahead (no model; speed from the recorded labels) is the reference.
The gap between static and oracle is how much of the trajectory the IK net reads from the motion
between the token grids. This is the measurement behind the choice of image size, patch size and
future horizons of the 3-camera tiny configuration (docs/training.md); it takes minutes on a CPU
because every frame is encoded once (``training.token_cache``).

Prints one JSON object (also written to ``--out``): the configuration, timings, and
``l2[mode]["l2_1s" | "l2_2s" | "l2_3s"]`` for mode in oracle / static / constant_speed.

``--save DIR`` also writes the trained IK net (:func:`training.ik_net_io.save_ik_net`: ``ik_net.safetensors`` with the
IK net's and the trajectory normaliser's tensors, ``ik_net.json`` with what they were trained
for), which ``model.ik_net_from`` of stage (b) starts from: the IK net first learns to read the
real motion with cheap steps (no VLA in the loop), then trains with the VLA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from training.ik_net_io import ik_net_meta, save_ik_net


def constant_speed_plan(speed: np.ndarray, num_waypoints: int, dt: float) -> np.ndarray:
    """[N, T, 2]: straight ahead at the current speed (m/s)."""
    t = dt * np.arange(1, num_waypoints + 1, dtype=np.float32)
    plan = np.zeros((speed.shape[0], num_waypoints, 2), np.float32)
    plan[:, :, 0] = speed[:, None] * t[None]
    return plan


def study_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float, step: int, steps: int, log=print,
               warmup_steps: int = 100) -> None:
    """One optimizer step of a study: linear warm-up then cosine down to 0.1 x ``lr``, gradient
    norm clipped at 1; logs the loss every 250 steps and at the last."""
    for g in opt.param_groups:
        g["lr"] = lr * min(1.0, (step + 1) / max(warmup_steps, 1)) * (0.55 + 0.45 * np.cos(np.pi * step / steps))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
    opt.step()
    if step % 250 == 0 or step == steps - 1:
        log(f"step {step} loss {float(loss.detach()):.4f}")


def emit_result(result: dict[str, Any], out: str | None) -> None:
    """Print a study's JSON result and also write it to ``out`` (when given)."""
    from carla_eval.atomic_io import atomic_write_json

    print(json.dumps(result, indent=2))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), result)


def _stack(ds: Any, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    from training.dataset import collate

    return collate([ds[i] for i in indices])


def run_study(encoder_dir: str, train_dirs: Sequence[str], val_dir: str, horizons: Sequence[float], *,
              steps: int = 1500, batch_size: int = 64, lr: float = 3e-4, warmup_steps: int = 100, seed: int = 0,
              max_val: int = 512,
              preset_overrides: dict[str, Any] | None = None, ik_overrides: dict[str, Any] | None = None,
              save_dir: str | None = None, log=print) -> dict[str, Any]:
    """Train the IK net alone on real-future tokens and measure oracle / static L2 (module doc)."""
    from agent.model.diffusion import build_inference_scheduler, build_train_scheduler, ddim_sample
    from agent.model.ik_net import IKNet
    from agent.model.normalizer import TrajectoryNormalizer
    from agent.model.presets import build_preset
    from training.dataset import DrivingDataset
    from training.manifest import scan_dataset
    from training.metrics import l2_at
    from training.pretrain import PRETRAIN_META, load_pretrained_encoder
    from training.token_cache import build_token_cache

    meta = json.loads((Path(encoder_dir) / PRETRAIN_META).read_text())
    vision = meta["vision"]
    overrides = dict(preset_overrides or {})
    overrides.setdefault("num_cameras", vision["num_cameras"])
    overrides.setdefault("image_size", tuple(vision["image_size"]))
    overrides.setdefault("patch_size", vision["backbone"]["patch_size"])
    model = build_preset("tiny", seed=seed, future_horizons_s=tuple(horizons), freeze_vision=True, **overrides)
    load_pretrained_encoder(model.get_vision_encoder(), encoder_dir, model.config.vision.to_dict())
    encoder = model.get_vision_encoder()
    cfg = model.config
    ik_cfg = dataclasses.replace(cfg.ik_net, **(ik_overrides or {}))
    torch.manual_seed(seed)
    grid = (cfg.vision.num_cameras, *cfg.vision.grid_size)
    net = IKNet(ik_cfg, cfg.vision.hidden_size, cfg.vision.tokens_per_frame, cfg.num_waypoints, token_grid=grid,
                num_future_frames=len(horizons))

    t0 = time.perf_counter()
    train_eps = [e for d in train_dirs for e in scan_dataset(d).episodes]
    val_eps = scan_dataset(val_dir).episodes

    def dataset(eps, max_frames, boxes):
        ds = DrivingDataset(eps, cfg.image_size, max_frames=max_frames, horizon_s=list(horizons),
                            cache_images=False, with_boxes=boxes)
        ds.tokens = build_token_cache(encoder, eps, cfg.image_size, ds.camera_ids, log=log)
        return ds

    train_ds, val_ds = dataset(train_eps, None, False), dataset(val_eps, max_val, False)
    cache_s = time.perf_counter() - t0
    log(f"train {len(train_ds)} / val {len(val_ds)} samples; tokens ready in {cache_s:.0f} s")
    normalizer = TrajectoryNormalizer(cfg.num_waypoints)
    normalizer.fit(torch.from_numpy(train_ds.all_trajectories()))
    sched = build_train_scheduler(ik_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    t1 = time.perf_counter()
    net.train()
    for step in range(steps):
        idx = torch.randint(0, len(train_ds), (batch_size,), generator=gen).tolist()
        b = _stack(train_ds, idx)
        x0 = normalizer.normalize(b["trajectory"])
        noise = torch.randn(x0.shape, generator=gen)
        k = torch.randint(0, ik_cfg.num_train_timesteps, (batch_size,), generator=gen)
        out = net(sched.add_noise(x0, noise, k), k, b["visual_tokens"], b["future_tokens"].flatten(1, 2))
        loss = F.mse_loss(out, x0 if ik_cfg.prediction_type == "sample" else noise)
        study_step(opt, loss, lr, step, steps, log, warmup_steps)
    train_s = time.perf_counter() - t1
    if save_dir is not None:
        vision_cfg = dict(cfg.vision.to_dict())
        save_ik_net(save_dir, net, normalizer, ik_net_meta(dataclasses.asdict(ik_cfg), vision_cfg, horizons,
                                                         cfg.num_waypoints) | {"encoder": str(encoder_dir)})

    net.eval()
    infer = build_inference_scheduler(ik_cfg)
    plans: dict[str, list[np.ndarray]] = {"oracle": [], "static": []}
    labels, speeds = [], []
    with torch.inference_mode():
        for start in range(0, len(val_ds), 64):
            b = _stack(val_ds, range(start, min(start + 64, len(val_ds))))
            cur, fut = b["visual_tokens"], b["future_tokens"].flatten(1, 2)
            static = cur.repeat(1, len(horizons), 1)
            for mode, future in (("oracle", fut), ("static", static)):
                memory = net.encode_memory(cur, future)
                g = torch.Generator().manual_seed(seed + start)
                x = ddim_sample(lambda xt, t: net.denoise(xt, t, memory), infer, (cur.shape[0], cfg.num_waypoints, 2),
                                ik_cfg.num_inference_steps, g, torch.device("cpu"))
                plans[mode].append(normalizer.unnormalize(x).numpy())
            labels.append(b["trajectory"].numpy())
            speeds.append(b["speed"].numpy())
    gt = np.concatenate(labels)
    dt = cfg.waypoint_dt
    result = {name: l2_at(np.concatenate(p), gt, [1.0, 2.0, 3.0], dt) for name, p in plans.items()}
    result["constant_speed"] = l2_at(constant_speed_plan(np.concatenate(speeds), cfg.num_waypoints, dt), gt,
                                     [1.0, 2.0, 3.0], dt)
    return {
        "encoder": str(encoder_dir), "horizons_s": list(horizons), "image_size": list(cfg.image_size),
        "patch_size": cfg.vision.patch_size, "tokens_per_frame": cfg.vision.tokens_per_frame,
        "ik_net": dataclasses.asdict(ik_cfg), "steps": steps, "batch_size": batch_size, "warmup_steps": warmup_steps,
        "train_samples": len(train_ds), "val_samples": len(val_ds),
        "token_cache_s": round(cache_s, 1), "train_s": round(train_s, 1), "s_per_step": round(train_s / max(steps, 1), 3),
        "l2": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ik_study", description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", required=True, help="stage-(a) output folder (encoder.safetensors, pretrain.json)")
    parser.add_argument("--train", nargs="+", required=True, help="training dataset folder(s)")
    parser.add_argument("--val", required=True, help="held-out dataset folder")
    parser.add_argument("--horizons", nargs="+", type=float, default=[3.0], help="future horizons (s)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--flow-heads", type=int, default=None, help="IK net token-matcher heads (default: the preset's)")
    parser.add_argument("--memory-layers", type=int, default=None, help="IK net memory self-attention layers")
    parser.add_argument("--flow-values", type=int, default=None, help="IK net token-matcher compared features per head")
    parser.add_argument("--max-val", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    parser.add_argument("--save", default=None, help="also save the trained IK net here (model.ik_net_from)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ik = {k: v for k, v in (("flow_heads", args.flow_heads), ("memory_layers", args.memory_layers),
                            ("flow_values", args.flow_values)) if v is not None}
    result = run_study(args.encoder, args.train, args.val, args.horizons, steps=args.steps, batch_size=args.batch_size,
                       lr=args.lr, seed=args.seed, max_val=args.max_val, ik_overrides=ik, save_dir=args.save,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    emit_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
