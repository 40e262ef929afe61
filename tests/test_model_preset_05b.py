"""The 0.5b preset, built from small local stand-in folders of the same architectures.

The folders hold a random Qwen2ForCausalLM (as Qwen2.5-0.5B-Instruct ships: with an lm_head and the
"model." prefix) with a tokenizer, and a random DINOv3ViTModel with 4 register tokens (as ViT-S/16).
"""

from __future__ import annotations

import pytest
import torch

from agent.model import IKDrivePipeline, ShortcutModel, build_pipeline, build_preset, load_pipeline, preset_config
from agent.model.tokenization import build_prompt_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import DINOv3ViTConfig, DINOv3ViTModel, Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    tokenizer = build_prompt_tokenizer()
    llm_cfg = Qwen2Config(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, eos_token_id=0, pad_token_id=0,
    )
    Qwen2ForCausalLM(llm_cfg).save_pretrained(root / "qwen")
    tokenizer.save_pretrained(root / "qwen")
    vit_cfg = DINOv3ViTConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_register_tokens=4, patch_size=16, layerscale_value=1e-5,
    )
    DINOv3ViTModel(vit_cfg).save_pretrained(root / "dino")
    return root / "qwen", root / "dino"


def random_inputs(config, batch):
    from agent.model import DrivingInputs

    g = torch.Generator().manual_seed(0)
    h, w = config.image_size
    return DrivingInputs(
        torch.rand(batch, config.num_cameras, 3, h, w, generator=g), torch.tensor([1, 3][:batch]),
        torch.tensor([3.0, 9.0][:batch]), torch.tensor([0.1, -0.4][:batch]), torch.tensor([[20.0, 1.0], [5.0, -3.0]][:batch]),
    )


def test_05b_preset_shapes_from_local_folders(folders):
    llm_path, vision_path = folders
    model = build_preset("0.5b", llm_path=llm_path, vision_path=vision_path)
    cfg = model.config
    assert cfg.num_cameras == 3 and cfg.image_size == (160, 288)
    assert cfg.vision.tokens_per_frame == 540 and cfg.future.num_queries == 540
    assert model.vision_frozen and cfg.vision.backbone["num_register_tokens"] == 4
    out = build_pipeline(model)(random_inputs(cfg, 2), generator=torch.Generator().manual_seed(0))
    assert out.trajectory.shape == (2, 6, 2)
    assert out.future_tokens.shape == (2, 540, 32)  # CLS and 4 registers dropped, per camera 18 x 10


def test_05b_preset_loads_the_pretrained_weights(folders):
    from transformers import DINOv3ViTModel, Qwen2ForCausalLM

    llm_path, vision_path = folders
    model = build_preset("0.5b", llm_path=llm_path, vision_path=vision_path)
    vit = DINOv3ViTModel.from_pretrained(vision_path, local_files_only=True)
    lm = Qwen2ForCausalLM.from_pretrained(llm_path, local_files_only=True)
    for name, tensor in vit.state_dict().items():
        assert torch.equal(model.vision.backbone.state_dict()[name], tensor), name
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(model.vla.llm.state_dict()[name], tensor), name


def test_05b_checkpoint_round_trip_needs_no_source_folders(folders, tmp_path):
    llm_path, vision_path = folders
    model = build_preset("0.5b", llm_path=llm_path, vision_path=vision_path, num_cameras=1, image_size=(32, 48))
    model.normalizer.fit(torch.randn(8, 6, 2).cumsum(dim=1))
    saved = model.save_pretrained(tmp_path / "ik-05b")
    pipe = load_pipeline(saved)
    assert isinstance(pipe, IKDrivePipeline)
    inputs = random_inputs(model.config, 1)
    a = build_pipeline(model)(inputs, generator=torch.Generator().manual_seed(0))
    b = pipe(inputs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.trajectory, b.trajectory)


def test_05b_shortcut_variant(folders):
    llm_path, vision_path = folders
    model = build_preset("0.5b", llm_path=llm_path, vision_path=vision_path, model_type="shortcut")
    assert isinstance(model, ShortcutModel)
    out = build_pipeline(model)(random_inputs(model.config, 1))
    assert out.trajectory.shape == (1, 6, 2) and out.future_tokens is None


def test_05b_needs_existing_local_folders(tmp_path, folders):
    with pytest.raises(ValueError, match="llm_path"):
        preset_config("0.5b", vision_path=folders[1])
    with pytest.raises(FileNotFoundError, match="vision_path"):
        preset_config("0.5b", llm_path=folders[0], vision_path=tmp_path / "missing")
