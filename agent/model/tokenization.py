"""The text prompt: formatting the numeric inputs, and the tiny models' tokenizer.

The prompt carries everything that is not an image: route command, ego speed, ego acceleration and
the next target point. In the IK model it steers the future-state prediction only (the IK net never
sees it); in the shortcut baseline it feeds the trajectory head directly.

Example (``format_prompt(1, 5.23, 0.31, 12.34, -1.0)``)::

    command: turn left. speed: 5.2 m/s. acceleration: 0.3 m/s2. target: x 12.3 y -1.0 m.

Numbers are rounded to 0.1 (speed and acceleration in m/s and m/s^2, target in the ego frame, x
forward and y right, in metres). Tiny models use a word-level tokenizer built in code over exactly
this vocabulary, with digits, signs and the decimal point as single tokens; pretrained LLMs use their
own tokenizer on the same text.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

# Leaderboard RoadOption values -> words. VOID (-1) is treated as LANEFOLLOW (docs/architecture.md).
COMMAND_WORDS: dict[int, str] = {
    -1: "follow lane",
    1: "turn left",
    2: "turn right",
    3: "go straight",
    4: "follow lane",
    5: "change lane left",
    6: "change lane right",
}

# The prompt's numbers as one vector (``status_features``; used by ``LLMConfig.status_queries``):
# a one-hot of the command over these RoadOption values (VOID counts as LANEFOLLOW), then speed,
# acceleration, target x and target y, each divided by its scale below and clipped to +-STATUS_CLIP.
STATUS_COMMANDS = (1, 2, 3, 4, 5, 6)
STATUS_SCALES = {"speed": 10.0, "acceleration": 5.0, "target_x": 20.0, "target_y": 20.0}  # m/s, m/s^2, m, m
STATUS_CLIP = 5.0
STATUS_SIZE = len(STATUS_COMMANDS) + len(STATUS_SCALES)

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"


def _number(value: float, name: str) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: prompt numbers must be finite, got {value}")
    rounded = round(value, 1)
    if rounded == 0.0:
        rounded = 0.0  # no "-0.0"
    return f"{rounded:.1f}"


def format_prompt(command: int, speed: float, acceleration: float, target_x: float, target_y: float) -> str:
    """The prompt text for one sample.

    Args:
        command: RoadOption value (see ``COMMAND_WORDS``); other values raise ``ValueError``.
        speed: ego speed, m/s.
        acceleration: longitudinal ego acceleration, m/s^2 (forward +).
        target_x, target_y: next route target in the ego frame (x forward, y right), m.
    """
    command = int(command)
    if command not in COMMAND_WORDS:
        raise ValueError(f"command: unknown RoadOption value {command}; expected one of {sorted(COMMAND_WORDS)}")
    return (
        f"command: {COMMAND_WORDS[command]}. "
        f"speed: {_number(speed, 'speed')} m/s. "
        f"acceleration: {_number(acceleration, 'acceleration')} m/s2. "
        f"target: x {_number(target_x, 'target_point.x')} y {_number(target_y, 'target_point.y')} m."
    )


def format_prompts(
    command: torch.Tensor, speed: torch.Tensor, acceleration: torch.Tensor, target_point: torch.Tensor
) -> list[str]:
    """One prompt per batch element; tensors [B], [B], [B], [B, 2]."""
    commands = command.detach().cpu().tolist()
    speeds = speed.detach().float().cpu().tolist()
    accels = acceleration.detach().float().cpu().tolist()
    targets = target_point.detach().float().cpu().tolist()
    return [format_prompt(c, s, a, t[0], t[1]) for c, s, a, t in zip(commands, speeds, accels, targets)]


def status_features(
    command: torch.Tensor, speed: torch.Tensor, acceleration: torch.Tensor, target_point: torch.Tensor
) -> torch.Tensor:
    """The prompt's inputs as numbers, float32 [B, STATUS_SIZE] (see ``STATUS_COMMANDS``).

    Tensors [B], [B], [B], [B, 2], as for :func:`format_prompts`; an unknown command or a number
    that is not finite raises ``ValueError`` naming it (the text prompt refuses the same inputs).
    """
    command = command.detach().long().reshape(-1)
    known = torch.tensor(sorted(COMMAND_WORDS), device=command.device)
    if not torch.isin(command, known).all():
        bad = sorted(set(command.tolist()) - set(COMMAND_WORDS))
        raise ValueError(f"command: unknown RoadOption value(s) {bad}; expected one of {sorted(COMMAND_WORDS)}")
    command = torch.where(command == -1, torch.full_like(command, 4), command)
    onehot = (command[:, None] == torch.tensor(STATUS_COMMANDS, device=command.device)[None]).float()  # [B, 6]
    target = target_point.detach().float().reshape(-1, 2)
    values = {"speed": speed.detach().float().reshape(-1), "acceleration": acceleration.detach().float().reshape(-1),
              "target_x": target[:, 0], "target_y": target[:, 1]}
    for name, value in values.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"{name}: status numbers must be finite")
    scaled = torch.stack([values[k] / STATUS_SCALES[k] for k in STATUS_SCALES], dim=1).clamp(-STATUS_CLIP, STATUS_CLIP)
    return torch.cat([onehot, scaled.to(onehot.device)], dim=1)  # [B, STATUS_SIZE]


def prompt_vocabulary() -> list[str]:
    """Every word-level token a formatted prompt can contain (for the tiny tokenizer)."""
    words: set[str] = {"command", "speed", "acceleration", "target", "x", "y", "m", "s", ":", ".", "/", "-"}
    for phrase in COMMAND_WORDS.values():
        words.update(phrase.split())
    words.update(str(d) for d in range(10))
    return sorted(words)


def build_prompt_tokenizer():
    """A word-level ``PreTrainedTokenizerFast`` over :func:`prompt_vocabulary`.

    Pre-tokenisation splits on whitespace, punctuation and every digit, so "-12.3" becomes
    ["-", "1", "2", ".", "3"] and "m/s2" becomes ["m", "/", "s", "2"]. Ids: 0 = [PAD], 1 = [UNK],
    then the vocabulary in sorted order. Saved and loaded with the checkpoint (tokenizer.json).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1}
    for word in prompt_vocabulary():
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD_TOKEN, unk_token=UNK_TOKEN)
    tokenizer.padding_side = "right"
    return tokenizer


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a padding token its end-of-sequence token as padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer: has neither a pad token nor an eos token to pad prompts with")
        tokenizer.pad_token = tokenizer.eos_token


def tokenize_prompts(tokenizer, prompts: Sequence[str], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenise a batch of prompts, padded on the RIGHT.

    Returns:
        input_ids: int64 [B, L_text]; attention_mask: int64 [B, L_text], 1 = real token, 0 = padding.
    Right padding keeps every padding row able to attend to the real tokens before it (no fully masked
    attention rows); the model derives position ids from the mask so padding never shifts positions.
    """
    if len(prompts) == 0:
        raise ValueError("prompts: empty batch")
    encoded = tokenizer(
        list(prompts),
        padding=True,
        padding_side="right",
        add_special_tokens=False,
        return_tensors="pt",
        return_attention_mask=True,
    )
    input_ids = encoded["input_ids"].to(device=device, dtype=torch.int64)
    attention_mask = encoded["attention_mask"].to(device=device, dtype=torch.int64)
    if int(attention_mask.sum(dim=1).min()) == 0:
        raise ValueError("prompts: a prompt tokenised to zero tokens")
    return input_ids, attention_mask
