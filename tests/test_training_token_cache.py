"""Token cache, dense pre-training targets, several future frames and the IK study on synthetic data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from training.config import DataConfig, EvalConfig, LogConfig, ModelConfig, OptimConfig, PretrainConfig, TrainConfig
from training.dataset import DrivingDataset, collate
from training.manifest import scan_dataset
from training.recording import RecorderConfig
from training.synthetic import write_synthetic_dataset
from training.token_cache import build_token_cache
from training.train import run

IMAGE = (32, 32)


@pytest.fixture(scope="module")
def gt_data(tmp_path_factory):
    cfg = RecorderConfig(cameras=("bev",), ground_truth=True)
    return write_synthetic_dataset(tmp_path_factory.mktemp("gt"), num_episodes=3, num_ticks=90, image_size=IMAGE, config=cfg)


def _encoder(seed=0):
    from agent.model.presets import build_preset

    model = build_preset("tiny", seed=seed, image_size=IMAGE, freeze_vision=True)
    return model.get_vision_encoder()


def test_cached_tokens_equal_the_encoders_tokens_of_the_dataset_images(gt_data, tmp_path):
    eps = scan_dataset(gt_data).episodes
    ds = DrivingDataset(eps, IMAGE, horizon_s=[1.0, 2.0], with_boxes=False)
    enc = _encoder()
    logs = []
    cache = build_token_cache(enc, eps, IMAGE, ds.camera_ids, cache_dir=tmp_path / "c", log=logs.append)
    assert "3 episodes encoded" in logs[-1]
    ds_tok = DrivingDataset(eps, IMAGE, horizon_s=[1.0, 2.0], with_boxes=False, tokens=cache)
    s_img, s_tok = ds[5], ds_tok[5]
    assert "images" not in s_tok and s_tok["future_tokens"].shape[0] == 2
    with torch.no_grad():
        want = enc(s_img["images"][None])[0]
        want_future = enc(s_img["future_images"])  # [F, K, D]: the F frames as a batch of one camera
    assert torch.allclose(s_tok["visual_tokens"], want, atol=2e-2, rtol=1e-2)
    assert torch.allclose(s_tok["future_tokens"], want_future, atol=2e-2, rtol=1e-2)
    # a second build reads the files; another encoder gets other files
    build_token_cache(enc, eps, IMAGE, ds.camera_ids, cache_dir=tmp_path / "c", log=logs.append)
    assert "0 episodes encoded" in logs[-1]
    other = build_token_cache(_encoder(seed=1), eps, IMAGE, ds.camera_ids, cache_dir=tmp_path / "c", log=logs.append)
    assert "3 episodes encoded" in logs[-1] and other.fingerprint != cache.fingerprint
    assert not np.allclose(other.get(0, 0), cache.get(0, 0))


def test_ground_truth_samples_and_their_absence(gt_data, tmp_path):
    eps = scan_dataset(gt_data).episodes
    s = DrivingDataset(eps, IMAGE, ground_truth=True, with_future=False, with_boxes=False)[3]
    assert s["depth"].shape == (1, *IMAGE) and s["semantic"].dtype == torch.int64
    assert set(np.unique(s["semantic"].numpy())) <= {1, 10, 14, 24} and float(s["depth"].min()) >= 18.5
    plain = write_synthetic_dataset(tmp_path / "plain", num_episodes=1, num_ticks=90, image_size=IMAGE)
    with pytest.raises(Exception, match="ground truth"):
        DrivingDataset(scan_dataset(plain).episodes, IMAGE, ground_truth=True, with_boxes=False)[0]


def _cfg(stage, data, out, pretrain=None, **model):
    return TrainConfig(
        stage=stage,
        data=DataConfig(train_dir=str(data), val_route_ids=["2"], max_val_frames=8, token_cache=stage == "train"),
        model=ModelConfig(overrides={"image_size": list(IMAGE), **model.pop("overrides", {})}, **model),
        optim=OptimConfig(max_steps=2, batch_size=4, warmup_steps=1),
        pretrain=pretrain or PretrainConfig(),
        log=LogConfig(output_dir=str(out), log_every=1, eval_every=2, save_every=2, tensorboard=False),
        eval=EvalConfig(batch_size=8),
    )


def test_dense_pretraining_then_ik_on_cached_tokens_with_three_future_frames(gt_data, tmp_path):
    from agent.model.pipeline import load_pipeline

    acc = Accelerator(cpu=True)
    dense = PretrainConfig(depth_weight=1.0, semantic_weight=0.5)
    pre = run(_cfg("pretrain_encoder", gt_data, tmp_path / "pre", pretrain=dense), accelerator=acc)
    for key in ("depth_log_l1", "semantic_ce", "semantic_acc", "recon_mse"):
        assert math.isfinite(pre.last_val[key]), key
    meta = json.loads((tmp_path / "pre" / "final" / "pretrain.json").read_text())
    assert meta["depth_weight"] == 1.0 and meta["semantic_weight"] == 0.5

    ik = run(_cfg("train", gt_data, tmp_path / "ik", encoder_from=str(tmp_path / "pre" / "final"),
                  overrides={"future_horizons_s": [1.0, 2.0, 3.0]}), accelerator=acc)
    assert math.isfinite(ik.last_val["l2_3s"]) and ik.last_val["target_relative_frame_std"] > 0
    assert list((gt_data / "token_cache").glob("*.safetensors"))
    pipe = load_pipeline(tmp_path / "ik" / "final")
    assert pipe.model.config.future.horizons_s == (1.0, 2.0, 3.0)
    eps = scan_dataset(gt_data).episodes
    batch = collate([DrivingDataset(eps, IMAGE, with_boxes=False)[i] for i in range(2)])
    from training.planner_task import driving_inputs

    out = pipe(driving_inputs(batch, "cpu"), generator=torch.Generator().manual_seed(0))
    k = pipe.model.config.vision.tokens_per_frame
    assert out.trajectory.shape == (2, 6, 2) and out.future_tokens.shape[1] == 3 * k


def test_dense_pretraining_without_ground_truth_names_the_problem(tmp_path):
    plain = write_synthetic_dataset(tmp_path / "plain", num_episodes=2, num_ticks=90, image_size=IMAGE)
    cfg = _cfg("pretrain_encoder", plain, tmp_path / "pre", pretrain=PretrainConfig(depth_weight=1.0))
    cfg.data.val_route_ids = ["1"]
    with pytest.raises(Exception, match="ground truth"):
        run(cfg, accelerator=Accelerator(cpu=True))


def test_ik_study_reports_oracle_static_and_constant_speed(gt_data, tmp_path):
    from training.ik_study import run_study

    acc = Accelerator(cpu=True)
    run(_cfg("pretrain_encoder", gt_data, tmp_path / "pre"), accelerator=acc)
    res = run_study(str(tmp_path / "pre" / "final"), [str(gt_data)], str(gt_data), [1.0, 2.0], steps=3, batch_size=8,
                    max_val=16, log=lambda m: None)
    assert res["horizons_s"] == [1.0, 2.0] and res["val_samples"] == 16
    for mode in ("oracle", "static", "constant_speed"):
        assert all(math.isfinite(v) for v in res["l2"][mode].values()), mode
    assert res["l2"]["constant_speed"]["l2_1s"] < 5.0  # the synthetic ego drives nearly at constant speed


def test_ik_net_trained_alone_starts_the_ik_stage(gt_data, tmp_path):
    from safetensors.torch import load_file

    from agent.model.pipeline import load_pipeline
    from training.config import ConfigError
    from training.ik_net_io import load_ik_net
    from training.ik_study import run_study
    from training.train import build_model

    acc = Accelerator(cpu=True)
    run(_cfg("pretrain_encoder", gt_data, tmp_path / "pre"), accelerator=acc)
    pre = str(tmp_path / "pre" / "final")
    run_study(pre, [str(gt_data)], str(gt_data), [1.0, 2.0], steps=2, batch_size=4, max_val=4,
              save_dir=str(tmp_path / "ik0"), log=lambda m: None)
    saved = load_file(str(tmp_path / "ik0" / "ik_net.safetensors"))
    cfg = _cfg("train", gt_data, tmp_path / "ik", encoder_from=pre, ik_net_from=str(tmp_path / "ik0"),
               overrides={"future_horizons_s": [1.0, 2.0]})
    model = build_model(cfg.model, 0)
    load_ik_net(model, tmp_path / "ik0")
    for name, value in model.ik_net.state_dict().items():
        assert torch.equal(value, saved[f"ik_net.{name}"]), name
    assert bool(model.normalizer.fitted) and torch.equal(model.normalizer.std, saved["normalizer.std"])
    other = build_model(_cfg("train", gt_data, tmp_path / "x", overrides={"future_horizons_s": [2.0]}).model, 0)
    with pytest.raises(ValueError, match="trained for horizons_s"):
        load_ik_net(other, tmp_path / "ik0")
    run(cfg, accelerator=acc)
    trained = load_pipeline(tmp_path / "ik" / "final").model
    assert torch.equal(trained.normalizer.mean, saved["normalizer.mean"])  # taken over, not refitted
    bad = _cfg("train", gt_data, tmp_path / "sc", kind="shortcut", encoder_from=pre, ik_net_from=str(tmp_path / "ik0"))
    with pytest.raises(ConfigError, match="ik_net_from"):
        run(bad, accelerator=acc)


def test_pixel_study_stacks_real_or_static_futures_and_reports(gt_data):
    from training.dataset import frame_images
    from training.pixel_study import PixelSamples, run_study

    eps = scan_dataset(gt_data).episodes
    samples = PixelSamples(eps, IMAGE, [1.0, 2.0], max_frames=10)
    frames, traj, speed = samples.batch([3, 4])
    assert frames.shape == (2, 1, 3, 3, *IMAGE) and frames.dtype == torch.uint8 and traj.shape == (2, 6, 2)
    e, f = int(samples.ds.index.episodes[3]), int(samples.ds.index.frames[3])
    np.testing.assert_array_equal(frames[0, :, 2].numpy(), frame_images(eps[e], f + 20, [0], IMAGE))  # 2 s = 20 frames
    static, _, _ = samples.batch([3, 4], static=True)
    assert torch.equal(static[:, :, 1], static[:, :, 0]) and torch.equal(static[:, :, 0], frames[:, :, 0])
    assert not torch.equal(static, frames)
    res = run_study([str(gt_data)], str(gt_data), [1.0, 2.0], IMAGE, steps=3, batch_size=4, max_val=8, log=lambda m: None)
    assert res["val_samples"] == 8
    for mode in ("oracle", "static", "constant_speed"):
        assert all(math.isfinite(v) for v in res["l2"][mode].values()), mode


def test_command_probe_orders_plans_per_command(gt_data, tmp_path):
    from agent.model.presets import build_preset
    from training.future_oracle import command_probe

    eps = scan_dataset(gt_data).episodes
    for ep in eps:
        ep.arrays["command"][::2] = 1  # LEFT on every other frame: junction frames for the probe
    ds = DrivingDataset(eps, IMAGE, with_boxes=False, max_frames=20)
    model = build_preset("tiny", seed=0, image_size=IMAGE)
    model.normalizer.fit(torch.from_numpy(ds.all_trajectories()))
    res = command_probe(model, ds, num_samples=1)
    assert res is not None and res["samples"] >= 1 and res["recorded_commands"]["LEFT"] == res["samples"]
    assert set(res["lateral_3s"]) == {"LEFT", "STRAIGHT", "RIGHT"} and 0.0 <= res["ordered"] <= 1.0
    for ep in eps:
        ep.arrays["command"][:] = 4
    assert command_probe(model, DrivingDataset(eps, IMAGE, with_boxes=False, max_frames=20)) is None
