"""Supervised fine-tuning batches: prompt + completion + eos, right-padded to a fixed length.

Each row is  [prompt tokens][completion tokens][eos][pad ...]  with
  tokens     int32   [B, L]  pad_id on padding
  positions  int32   [B, L]  0 .. n-1 on the n real tokens, -1 on padding (never attended to)
  loss_mask  float32 [B, L]  aligned to the TARGETS: loss_mask[b, t] = 1 iff tokens[b, t+1] is a completion
                             token (the eos included), i.e. it weights the loss of logits[b, t] predicting
                             tokens[b, t+1]. The last column is always 0.
L = max_len for every batch, so shapes never change and the step compiles once.

batch(step) is a pure function of (seed, step): the example stream is epoch after epoch of a permutation
seeded by (seed, epoch), and step s takes stream items [s*B, (s+1)*B), so resuming at any step is exact and
every epoch visits each example once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rr.data.errors import DataError
from rr.data.prompts import format_completion, format_prompt
from rr.tasks import Example


class SFTBatches:

  def __init__(self, examples: Sequence[Example], tokenizer, batch_size: int, max_len: int, seed: int):
    if not examples:
      raise DataError("SFTBatches got no examples; check config.data.train_size or the JSONL file")
    if batch_size <= 0 or max_len <= 1:
      raise DataError(f"SFTBatches needs batch_size > 0 and max_len > 1, got {batch_size} and {max_len}")
    self.examples = list(examples)
    self.tokenizer = tokenizer
    self.batch_size = batch_size
    self.max_len = max_len
    self.seed = seed
    self._permutations: dict[int, np.ndarray] = {}
    self._prompts, self._completions = [], []
    for example in self.examples:
      self._prompts.append(tokenizer.encode(format_prompt(example.question, tokenizer)))
      self._completions.append(tokenizer.encode(format_completion(example)) + [tokenizer.eos_id])
    if any(not prompt for prompt in self._prompts):
      raise DataError("a prompt encoded to no tokens; the tokenizer must give format_prompt(question) an id")
    lengths = [len(p) + len(c) for p, c in zip(self._prompts, self._completions)]
    longest = int(np.argmax(lengths))
    self.max_example_len = lengths[longest]
    if self.max_example_len > max_len:
      raise DataError(
          f"example {longest} (question {self.examples[longest].question[:60]!r}) is {self.max_example_len} "
          f"tokens with prompt, completion and eos, longer than max_len={max_len}; raise config.data.max_len "
          f"to at least {self.max_example_len} (examples are never truncated)")

  @property
  def num_examples(self) -> int:
    return len(self.examples)

  @property
  def steps_per_epoch(self) -> float:
    return self.num_examples / self.batch_size

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:  # a batch spans at most a few epochs; keep memory flat
        self._permutations.clear()
      self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
    return self._permutations[epoch]

  def example_indices(self, step: int) -> np.ndarray:
    """Indices into `examples` of the rows of batch `step`."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    stream = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
    epochs, offsets = np.divmod(stream, self.num_examples)
    return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    B, L = self.batch_size, self.max_len
    tokens_BxL = np.full((B, L), self.tokenizer.pad_id, dtype=np.int32)
    positions_BxL = np.full((B, L), -1, dtype=np.int32)
    loss_mask_BxL = np.zeros((B, L), dtype=np.float32)
    for row, i in enumerate(self.example_indices(step)):
      prompt, completion = self._prompts[i], self._completions[i]
      n = len(prompt) + len(completion)
      tokens_BxL[row, :n] = prompt + completion
      positions_BxL[row, :n] = np.arange(n)
      # Targets tokens[t+1] for t in [len(prompt)-1, n-2] are the completion tokens (eos included).
      loss_mask_BxL[row, len(prompt) - 1:n - 1] = 1.0
    return {"tokens": tokens_BxL, "positions": positions_BxL, "loss_mask": loss_mask_BxL}
