"""Choosing the next token and turning token ids into text pieces, one step at a time.

Owns: `TokenChooser` (repetition penalty, temperature, top-k, top-p through transformers'
logits processors; greedy when temperature is 0; seeded sampling) and `IncrementalText`
(the text each token adds, correct across multi-byte UTF-8 characters split over several
byte-level tokens). Does not own: the model or the loop (engine/run.py).
"""

from __future__ import annotations

from typing import Any

import torch

from medviz_core.types import GenerationParams

REPLACEMENT_CHAR = "\ufffd"


class TokenChooser:
    """Pick the next token from the last logits row, as `generate` would with the same settings."""

    def __init__(self, params: GenerationParams, device: torch.device) -> None:
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.greedy = params.temperature == 0.0
        self.processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        if not self.greedy:
            if params.temperature != 1.0:
                self.processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k > 0:
                self.processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(params.top_p))
        self.generator: torch.Generator | None = None
        if not self.greedy:
            self.generator = torch.Generator(device=device)
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()

    def choose(self, history: torch.Tensor, logits: torch.Tensor) -> int:
        """history: [1, seq] ids so far; logits: [1, vocab] for the next position."""
        scores = self.processors(history.long(), logits.float())  # type: ignore[arg-type]
        if self.greedy:
            return int(scores.argmax(-1).item())
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator).item())


class IncrementalText:
    """Emit the text each new token adds, holding back incomplete UTF-8 sequences.

    Decodes a short window of recent ids (prefix offset / read offset), so each step costs
    O(window), and the pieces always concatenate to the full decoded text.
    """

    def __init__(self, processor: Any) -> None:
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def add(self, token_id: int, final: bool = False) -> str:
        """The text `token_id` adds; `final` flushes bytes held back for an unfinished character."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if len(full) <= len(prefix) or (full.endswith(REPLACEMENT_CHAR) and not final):
            return ""
        piece = full[len(prefix) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self.ids)
        return piece
