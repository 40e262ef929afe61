"""Random-weight stand-ins of the 0.5B configuration's pretrained folders, for smoke runs and tests.

    python -m training.standin_weights --out DIR [--arch 0.5b|small]

writes ``DIR/Qwen2.5-0.5B-Instruct`` (a ``Qwen2ForCausalLM`` saved with ``save_pretrained``, as the
released model ships: config.json, model.safetensors, tokenizer files) and ``DIR/dinov3-vits16`` (a
``DINOv3ViTModel``), laid out like the Hugging Face folders, so the ``0.5b`` preset and
training/configs/ik_0.5b_b2d.yaml build from them with ``local_files_only=True``. ``--arch 0.5b``
uses the real architectures (Qwen2.5-0.5B-Instruct, DINOv3 ViT-S/16; about 2 GB in fp32); ``small``
a 2-layer version of each. The tokenizer is the project's prompt tokenizer (the real Qwen tokenizer
cannot be built offline), so the stand-ins check shapes, memory and speed, not language.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

LLM_NAME = "Qwen2.5-0.5B-Instruct"
VISION_NAME = "dinov3-vits16"

SMALL_LLM: dict[str, Any] = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                 eos_token_id=0)
SMALL_VISION: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    num_register_tokens=4, patch_size=16, layerscale_value=1.0)


def write_standins(out: str | Path, arch: str = "small", seed: int = 0) -> tuple[Path, Path]:
    """Write the two folders under ``out``; returns (llm folder, vision folder)."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTModel, Qwen2Config, Qwen2ForCausalLM

    from agent.model.presets import DINOV3_VITS16_ARCH, QWEN25_05B_ARCH
    from agent.model.tokenization import build_prompt_tokenizer

    if arch == "0.5b":
        llm_arch = dict(QWEN25_05B_ARCH)
        vision_arch = {k: v for k, v in DINOV3_VITS16_ARCH.items() if k != "image_size"}
    elif arch == "small":
        llm_arch, vision_arch = dict(SMALL_LLM), dict(SMALL_VISION)
    else:
        raise ValueError(f"arch: {arch!r} is not '0.5b' or 'small'")
    out = Path(out)
    llm_dir, vision_dir = out / LLM_NAME, out / VISION_NAME
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        Qwen2ForCausalLM(Qwen2Config(**llm_arch, pad_token_id=0)).save_pretrained(llm_dir)
        DINOv3ViTModel(DINOv3ViTConfig(**vision_arch)).save_pretrained(vision_dir)
    build_prompt_tokenizer().save_pretrained(llm_dir)
    return llm_dir, vision_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.standin_weights", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the two model folders into")
    parser.add_argument("--arch", choices=("small", "0.5b"), default="small")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    llm, vision = write_standins(args.out, args.arch, args.seed)
    print(f"wrote {llm} and {vision}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
