"""The 0.5B Bench2Drive configuration (training/configs/ik_0.5b_b2d.yaml) built from local folders
laid out like the Hugging Face ones, and one training step on CPU with short sequences.

The folders are written with ``save_pretrained`` from random weights of the real architectures
(Qwen2ForCausalLM with its tokenizer files, DINOv3ViTModel): at reduced sizes in the default
suite, at the real Qwen2.5-0.5B / DINOv3 ViT-S/16 shapes in the slow test.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from training.bench2drive_synthetic import SyntheticClipConfig, write_synthetic_clip
from training.config import load_config

CONFIG = "training/configs/ik_0.5b_b2d.yaml"


def write_folders(root: Path, arch: str) -> tuple[Path, Path]:
    from training.standin_weights import write_standins

    return write_standins(root, arch)


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2d05")
    write_synthetic_clip(root / "train", SyntheticClipConfig(num_frames=40, width=192, height=108))
    return root / "train"


def config_for(tmp_path, clip_root, llm, vit, lora: bool, image_size=(32, 48), steps=1):
    cfg = load_config(CONFIG)
    model = dataclasses.replace(
        cfg.model, llm_path=str(llm), vision_path=str(vit),
        overrides={**cfg.model.overrides, "image_size": list(image_size)},
        lora=dataclasses.replace(cfg.model.lora, enabled=lora),
    )
    data = dataclasses.replace(cfg.data, train_dir=str(clip_root), val_dir=None, num_workers=0)
    optim = dataclasses.replace(cfg.optim, max_steps=steps, batch_size=2, warmup_steps=1)
    log = dataclasses.replace(cfg.log, output_dir=str(tmp_path / "run"), log_every=1, eval_every=1000,
                              save_every=1000, tensorboard=False)
    return dataclasses.replace(cfg, model=model, data=data, optim=optim, log=log, num_threads=1,
                               mixed_precision="no")


def test_the_config_is_the_papers(tmp_path):
    cfg = load_config(CONFIG)
    assert cfg.model.preset == "0.5b" and cfg.model.freeze_encoder
    assert cfg.model.overrides["projector"] == "mlp2x_gelu" and cfg.mixed_precision == "bf16"
    assert cfg.data.format == "bench2drive" and cfg.log.output_dir == "runs/ik_0.5b_b2d"


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_one_training_step_from_local_folders(tmp_path, clip_root, lora):
    from agent.model import load_pipeline
    from training.lora import ADAPTERS_NAME
    from training.train import build_model, configure_llm_training, run

    llm, vit = write_folders(tmp_path, "small")
    cfg = config_for(tmp_path, clip_root, llm, vit, lora)
    probe = build_model(cfg.model, cfg.seed)
    assert probe.config.llm.projector == "mlp2x_gelu" and probe.config.num_cameras == 3
    adapted = configure_llm_training(probe, cfg.model)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    if lora:
        assert len(adapted) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
        assert not any(n.startswith("vla.reader.llm.") and "lora_" not in n for n in trainable)
    else:
        assert "vla.reader.llm.layers.0.self_attn.q_proj.weight" in trainable
    assert not any(n.startswith("vision.backbone.") for n in trainable)  # DINOv3 frozen

    result = run(cfg)
    assert result.final_step == 1
    final = Path(result.final_model)
    assert (final / ADAPTERS_NAME).is_file() == lora
    pipe = load_pipeline(final)  # the merged model loads without the adapters
    assert not any("lora_" in k for k in pipe.model.state_dict())
    assert pipe.model.config.llm.projector == "mlp2x_gelu"


def test_lora_merge_is_exact_and_resume_checks_the_base(tmp_path):
    from torch import nn

    from training.lora import apply_lora, load_with_adapters, merged_view, save_with_adapters
    from agent.model.presets import build_preset

    model = build_preset("tiny", num_cameras=1, image_size=(32, 32))
    model.normalizer.fit(torch.randn(8, 6, 2).cumsum(dim=1))
    apply_lora(model.vla.llm, ["q_proj", "v_proj"], rank=4, alpha=8.0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)  # a trained adapter
    x = torch.randn(2, 5, 128)
    layer = model.vla.llm.layers[0].self_attn.q_proj
    with merged_view(model) as plain:
        merged_out = plain["vla.reader.llm.layers.0.self_attn.q_proj"](x)
    torch.testing.assert_close(layer(x), merged_out, rtol=1e-5, atol=1e-5)
    save_with_adapters(model, tmp_path / "ck")

    fresh = build_preset("tiny", num_cameras=1, image_size=(32, 32))
    apply_lora(fresh.vla.llm, ["q_proj", "v_proj"], rank=4, alpha=8.0)
    load_with_adapters(fresh, tmp_path / "ck")
    torch.testing.assert_close(fresh.vla.llm.layers[0].self_attn.q_proj(x), layer(x))

    other = build_preset("tiny", seed=1, num_cameras=1, image_size=(32, 32))  # another base LLM
    apply_lora(other.vla.llm, ["q_proj", "v_proj"], rank=4, alpha=8.0)
    with pytest.raises(ValueError, match="differs from base"):
        load_with_adapters(other, tmp_path / "ck")
    with pytest.raises(ValueError, match="no linear layer"):
        apply_lora(build_preset("tiny").vla.llm, ["qkv"], rank=4, alpha=8.0)


@pytest.mark.slow
def test_one_lora_step_with_the_real_05b_shapes(tmp_path, clip_root):
    """Qwen2.5-0.5B (24 x 896, vocab 151936) and DINOv3 ViT-S/16 (12 x 384), random weights."""
    from training.train import run

    llm, vit = write_folders(tmp_path, "0.5b")
    cfg = config_for(tmp_path, clip_root, llm, vit, lora=True, image_size=(32, 48))
    from transformers import Qwen2Config

    hf = Qwen2Config.from_pretrained(llm)
    assert (hf.hidden_size, hf.num_hidden_layers, hf.vocab_size, hf.num_key_value_heads) == (896, 24, 151936, 2)
    result = run(cfg)
    assert result.final_step == 1
    row = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()[-1]
    assert "nan" not in row.lower()


def test_standin_cli_writes_hf_layout_folders(tmp_path):
    from transformers import AutoConfig

    from training.standin_weights import main

    assert main(["--out", str(tmp_path), "--arch", "small"]) == 0
    for name, kind in (("Qwen2.5-0.5B-Instruct", "qwen2"), ("dinov3-vits16", "dinov3_vit")):
        folder = tmp_path / name
        assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
        assert AutoConfig.from_pretrained(folder, local_files_only=True).model_type == kind
    assert (tmp_path / "Qwen2.5-0.5B-Instruct" / "tokenizer.json").is_file()
