"""Prompt and response encoding with a model's chat template (small and picklable for data workers), and
left padding of prompt batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ChatFormat:
    """Encode a user message as a generation prompt and a completion as SFT response ids.

    The response is the completion followed by the family's end-of-turn ids (LLaDA's ``<|eot_id|>``)
    and one EOS; the SFT collator pads the rest with EOS. ``chat_template=False`` encodes the message as
    plain text after BOS, for pretraining-style tasks whose completion continues the prompt's line.
    """

    tokenizer: Any
    eos_token_ids: tuple[int, ...]
    eot_token_ids: tuple[int, ...] = ()

    def prompt_ids(self, user_message: str, chat_template: bool = True) -> list[int]:
        if not chat_template:
            bos = self.tokenizer.bos_token_id
            ids = self.tokenizer(user_message, add_special_tokens=False)["input_ids"]
            return [bos, *ids] if bos is not None else list(ids)
        messages = [{"role": "user", "content": user_message}]
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            return list(ids)
        return list(self.tokenizer(user_message, add_special_tokens=True)["input_ids"])

    def response_ids(self, completion: str) -> list[int]:
        ids = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
        return [*ids, *self.eot_token_ids, self.eos_token_ids[0]]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, P)`` ids left-padded with ``pad_id`` and the matching ``(B, P)`` attention mask."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for b, seq in enumerate(sequences):
        if seq:
            ids[b, width - len(seq) :] = torch.as_tensor(seq)
            mask[b, width - len(seq) :] = 1
    return ids, mask
