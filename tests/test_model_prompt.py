"""Prompt formatting and the tiny prompt tokenizer."""

from __future__ import annotations

import pytest
import torch

from agent.model import build_prompt_tokenizer, format_prompt, format_prompts
from agent.model.tokenization import COMMAND_WORDS, UNK_TOKEN, tokenize_prompts


def test_format_prompt_matches_the_documented_example():
    text = format_prompt(1, 5.23, 0.31, 12.34, -1.0)
    assert text == "command: turn left. speed: 5.2 m/s. acceleration: 0.3 m/s2. target: x 12.3 y -1.0 m."


def test_void_is_lane_follow_and_no_negative_zero():
    assert format_prompt(-1, 0, 0, 0, 0) == format_prompt(4, 0, 0, 0, 0)
    assert "-0.0" not in format_prompt(4, -0.04, -0.01, -0.02, -0.049)


@pytest.mark.parametrize("bad", [0, 7, 99])
def test_unknown_command_raises(bad):
    with pytest.raises(ValueError, match="command"):
        format_prompt(bad, 1.0, 0.0, 1.0, 0.0)


def test_non_finite_numbers_raise():
    with pytest.raises(ValueError, match="speed"):
        format_prompt(4, float("nan"), 0.0, 1.0, 0.0)


def test_format_prompts_batches():
    prompts = format_prompts(torch.tensor([2, 3]), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.5]), torch.tensor([[3.0, 1.0], [4.0, -2.0]]))
    assert prompts == [format_prompt(2, 1.0, 0.0, 3.0, 1.0), format_prompt(3, 2.0, 0.5, 4.0, -2.0)]


def test_tiny_tokenizer_covers_every_prompt_without_unknown_tokens():
    tok = build_prompt_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK_TOKEN)
    for command in COMMAND_WORDS:
        text = format_prompt(command, 13.76, -2.55, 101.25, -33.3)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert unk not in ids, text
    assert tok.tokenize("x -12.3") == ["x", "-", "1", "2", ".", "3"]


def test_tokenize_prompts_pads_on_the_right_with_a_mask():
    tok = build_prompt_tokenizer()
    short = format_prompt(4, 1.0, 0.0, 1.0, 0.0)
    long = format_prompt(6, 12.5, -3.5, 120.5, -45.5)
    ids, mask = tokenize_prompts(tok, [short, long], "cpu")
    assert ids.dtype == torch.int64 and ids.shape == mask.shape
    n_short = len(tok(short, add_special_tokens=False)["input_ids"])
    assert mask[0, :n_short].all() and not mask[0, n_short:].any()
    assert mask[1].all()
    assert (ids[0, n_short:] == tok.pad_token_id).all()
