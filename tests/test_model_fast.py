"""The fast inference path (agent/model/fast.py) against the eager pipeline, on tiny CPU models."""

from __future__ import annotations

import copy

import pytest
import torch

from agent.model import build_pipeline, build_preset
from agent.model.benchmark import main, random_inputs
from agent.model.diffusion import build_inference_scheduler, ddim_sample
from agent.model.fast import FastIKDrivePipeline, FastPathConfig, ddim_loop, ddim_plan, longest_prompt_tokens
from agent.model.tokenization import format_prompt

torch.set_num_threads(1)


def tiny(prediction_type=None, **kw):
    overrides = {"num_cameras": 3, "image_size": (32, 64), **kw}
    if prediction_type:
        overrides["prediction_type"] = prediction_type
    model = build_preset("tiny", **overrides)
    model.normalizer.fit(torch.randn(16, 6, 2, generator=torch.Generator().manual_seed(0)).cumsum(1) * 3.0)
    return model


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize("steps", [1, 3])
def test_ddim_loop_equals_the_diffusers_scheduler(prediction_type, steps):
    from agent.model.configuration import IKNetConfig

    cfg = IKNetConfig(hidden_size=32, num_layers=1, num_heads=2, prediction_type=prediction_type)
    w = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))

    def denoise(x, t):  # any deterministic function of (x, t)
        return torch.tanh(x @ w) * (1.0 + t.float()[:, None, None] / 1000.0)

    ref = ddim_sample(denoise, build_inference_scheduler(cfg), (4, 6, 2), steps,
                      torch.Generator().manual_seed(5), torch.device("cpu"))
    x_t = torch.randn((4, 6, 2), generator=torch.Generator().manual_seed(5))
    ours = ddim_loop(denoise, x_t, ddim_plan(build_inference_scheduler(cfg), steps))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_samples", [1, 4])
@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
def test_fp32_fast_path_equals_the_eager_pipeline(num_samples, prediction_type):
    model = tiny(prediction_type)
    inputs = random_inputs(model.config, 2, torch.Generator().manual_seed(0))
    ref = build_pipeline(model)(inputs, generator=torch.Generator().manual_seed(3), num_samples=num_samples)
    fast = FastIKDrivePipeline(copy.deepcopy(model), FastPathConfig(dtype="float32", compile=False, batch_size=2,
                                                                    num_samples=num_samples))
    out = fast(inputs, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.trajectory, ref.trajectory, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.future_tokens, ref.future_tokens, rtol=1e-4, atol=1e-4)
    assert set(out.timings) == {"encoder", "vla", "ik_net", "total"}


def test_bf16_fast_path_is_close_and_keeps_the_normaliser_fp32():
    model = tiny()
    inputs = random_inputs(model.config, 1, torch.Generator().manual_seed(0))
    ref = build_pipeline(model)(inputs, generator=torch.Generator().manual_seed(3))
    fast = FastIKDrivePipeline(copy.deepcopy(model), FastPathConfig(dtype="bfloat16", compile=False))
    out = fast(inputs, generator=torch.Generator().manual_seed(3))
    assert fast.model.ik_net.traj_in.weight.dtype == torch.bfloat16
    assert fast.model.vla.llm.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert fast.model.normalizer.mean.dtype == torch.float32
    assert out.trajectory.dtype == torch.float32
    scale = float(ref.trajectory.abs().max())
    assert float((out.trajectory - ref.trajectory).abs().max()) < 0.05 * scale + 0.05


def test_static_shapes_are_enforced():
    model = tiny()
    fast = FastIKDrivePipeline(model, FastPathConfig(dtype="float32", compile=False, batch_size=1))
    with pytest.raises(ValueError, match="batch_size 1"):
        fast(random_inputs(model.config, 2, torch.Generator().manual_seed(0)))
    inputs = random_inputs(model.config, 1, torch.Generator().manual_seed(0))
    ids, mask = fast.tokenize(inputs)
    assert ids.shape == mask.shape == (1, fast.prompt_tokens) and int(mask.sum()) < fast.prompt_tokens
    short = FastIKDrivePipeline(tiny(), FastPathConfig(dtype="float32", compile=False, prompt_tokens=5))
    with pytest.raises(ValueError, match="static prompt length 5"):
        short(inputs)
    with pytest.raises(ValueError, match="dtype"):
        FastPathConfig(dtype="int8")


def test_longest_prompt_bounds_every_prompt():
    tok = tiny().tokenizer
    n = longest_prompt_tokens(tok)
    for c in (1, 2, 3, 4, 5, 6):
        for numbers in ((0.0, 0.0, 0.0, 0.0), (12.3, -4.5, 123.4, -56.7), (-99.9, 99.9, -999.9, 999.9)):
            assert len(tok(format_prompt(c, *numbers), add_special_tokens=False)["input_ids"]) <= n


def test_benchmark_prints_the_ratio_to_the_fp32_eager_baseline(capsys):
    assert main(["--preset", "tiny", "--runs", "2", "--warmup", "1", "--steps", "2", "--threads", "1",
                 "--fast", "on", "--no-compile", "--dtype", "float32"]) == 0
    text = capsys.readouterr().out
    assert "fp32 eager baseline" in text and "ratio (eager / fast)" in text
    assert "static shapes" in text and "CUDA graphs" not in text


@pytest.mark.slow
def test_compiled_fast_path_equals_the_eager_pipeline():
    model = tiny()
    inputs = random_inputs(model.config, 1, torch.Generator().manual_seed(0))
    ref = build_pipeline(model)(inputs, generator=torch.Generator().manual_seed(3), num_samples=2)
    fast = FastIKDrivePipeline(copy.deepcopy(model), FastPathConfig(dtype="float32", compile=True, num_samples=2))
    for _ in range(2):  # the second call runs the compiled code without recompiling
        out = fast(inputs, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.trajectory, ref.trajectory, rtol=1e-4, atol=1e-4)
