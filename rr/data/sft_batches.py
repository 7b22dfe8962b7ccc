"""Supervised fine-tuning batches: prompt + completion + eos, right-padded to a fixed length.

Each row is  [prompt tokens][completion tokens][eos][pad ...]  with
  tokens     int32   [B, L]  pad_id on padding
  positions  int32   [B, L]  0 .. n-1 on the n real tokens, -1 on padding (never attended to)
  loss_mask  float32 [B, L]  aligned to the TARGETS: loss_mask[b, t] = 1 iff tokens[b, t+1] is a completion
                             token (the eos included), i.e. it weights the loss of logits[b, t] predicting
                             tokens[b, t+1]. The last column is always 0.
L is the batch's bucket: the smallest of 32, 64, 128, ... that holds its longest row, capped at max_len, so a
batch of short examples is not padded to a long max_len and the step compiles once per bucket (a handful).
`rows(indices)` (what a cache of teacher outputs reads) is always max_len wide.

batch(step) is a pure function of (seed, step): the stream is epoch after epoch of a permutation of the units
(examples, or packed rows) seeded by (seed, epoch), and step s takes stream items [s*E, (s+1)*E) (E units per
batch), so resuming at any step is exact and every epoch visits each example once.

packing  (data.packing) several examples per row, each a segment: positions restart at 0 in each, and
         segment_ids [B, L] int32 numbers them 0, 1, ... in the row (-1 on padding), so the decoder keeps each
         query inside its own example. The training set is packed once, at construction, into rows of max_len
         columns by best-fit decreasing (`pack`); each epoch permutes those rows and a batch takes B of them, so
         its shape stays [B, L] while the number of examples it holds varies. Packing per step instead would make
         where step s starts depend on every step before it (or leave rows unfilled at each step's end).

Two variants of the rows (docs/methods.md):
  thought_dropout = p   (TON) each row's completion is, with probability p, "<think></think>" + answer: the
                        rationale dropped. The draw of row r of step s is a pure function of (seed, s, r).
  step_by_step          (distilling step-by-step) two rows per example, so E = B / 2: row 2j is the predict task
                        ("predict: " + question -> answer), row 2j+1 the explain task ("explain: " + question ->
                        "<think>" + rationale + "</think>"); `rationale_mask` [B, L] marks the explain rows'
                        targets (the loss_mask covers both).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from rr.data.errors import DataError
from rr.data.prompts import format_completion, format_prompt
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.tasks import Example

PREDICT_PREFIX = "predict: "  # distilling step-by-step: the task prefix of the answer rows (and of evaluation)
EXPLAIN_PREFIX = "explain: "  # ... and of the rationale rows
# Seeds the dropout draws, [seed, 2, step], apart from the permutations' [seed, epoch] and gkd's [seed, 1, step].
_THOUGHT_DROPOUT_STREAM = 2


class _Row(NamedTuple):
  prompt: list[int]
  completion: list[int]  # eos included
  rationale_task: bool = False  # an explain row of distilling step-by-step


class SFTBatches:

  def __init__(self, examples: Sequence[Example], tokenizer, batch_size: int, max_len: int, seed: int,
               thought_dropout: float = 0.0, step_by_step: bool = False, packing: bool = False):
    if not examples:
      raise DataError("SFTBatches got no examples; check config.data.train_size or the JSONL file")
    if batch_size <= 0 or max_len <= 1:
      raise DataError(f"SFTBatches needs batch_size > 0 and max_len > 1, got {batch_size} and {max_len}")
    if not 0.0 <= thought_dropout <= 1.0:
      raise DataError(f"thought_dropout={thought_dropout} must be a probability in [0, 1]")
    if step_by_step and (batch_size % 2 or thought_dropout):
      raise ValueError("step_by_step lays each example out as two rows (an even batch_size) and trains the "
                       "rationale as its own task, so it takes no thought_dropout")
    if packing and (step_by_step or thought_dropout):
      raise ValueError("packing lays out the plain SFT rows once, at construction; it takes neither step_by_step's "
                       "two rows per example nor thought_dropout's rows drawn per step")
    self.examples = list(examples)
    self.tokenizer = tokenizer
    self.batch_size = batch_size
    self.max_len = max_len
    self.seed = seed
    self.thought_dropout = thought_dropout
    self.step_by_step = step_by_step
    self.packing = packing
    self.rows_per_example = 2 if step_by_step else 1
    self._permutations: dict[int, np.ndarray] = {}
    self._rows = [self._encode(example) for example in self.examples]
    # TON's row without its thought: the same prompt, completion "<think></think>" + answer + eos.
    self._no_thought = [_Row(rows[0].prompt, self._completion(dataclasses.replace(example, rationale="")))
                        for rows, example in zip(self._rows, self.examples)] if thought_dropout else []
    if any(not row.prompt for rows in self._rows for row in rows):
      raise DataError("a prompt encoded to no tokens; the tokenizer must give format_prompt(question) an id")
    lengths = [max(len(row.prompt) + len(row.completion) for row in rows + self._no_thought[i:i + 1])
               for i, rows in enumerate(self._rows)]
    longest = int(np.argmax(lengths))
    self.max_example_len = lengths[longest]
    if self.max_example_len > max_len:
      raise DataError(
          f"example {longest} (question {self.examples[longest].question[:60]!r}) is {self.max_example_len} "
          f"tokens with prompt, completion and eos, longer than max_len={max_len}; raise config.data.max_len "
          f"to at least {self.max_example_len} (examples are never truncated)")
    # With packing the units of the stream are packed rows (example indices each), else single examples.
    self._packs = pack(lengths, max_len) if packing else None

  def _completion(self, example: Example) -> list[int]:
    return self.tokenizer.encode(format_completion(example)) + [self.tokenizer.eos_id]

  def _encode(self, example: Example) -> list[_Row]:
    prompt = lambda question: self.tokenizer.encode(format_prompt(question, self.tokenizer))
    if not self.step_by_step:
      return [_Row(prompt(example.question), self._completion(example))]
    eos = [self.tokenizer.eos_id]
    explain = self.tokenizer.encode(THINK_OPEN + example.rationale + THINK_CLOSE) + eos
    return [_Row(prompt(PREDICT_PREFIX + example.question), self.tokenizer.encode(example.answer) + eos),
            _Row(prompt(EXPLAIN_PREFIX + example.question), explain, rationale_task=True)]

  @property
  def num_examples(self) -> int:
    return len(self.examples)

  @property
  def num_units(self) -> int:
    """How many units an epoch permutes: packed rows with packing, else examples."""
    return len(self._packs) if self.packing else self.num_examples

  @property
  def units_per_batch(self) -> int:
    """E, the stream items a batch takes: B packed rows, or B / rows_per_example examples."""
    return self.batch_size if self.packing else self.batch_size // self.rows_per_example

  @property
  def steps_per_epoch(self) -> float:
    return self.num_units / self.units_per_batch

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:  # a batch spans at most a few epochs; keep memory flat
        self._permutations.clear()
      self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_units)
    return self._permutations[epoch]

  def _units(self, step: int) -> np.ndarray:
    """Indices of the units of batch `step`: stream items [step * E, (step + 1) * E)."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    stream = np.arange(step * self.units_per_batch, (step + 1) * self.units_per_batch)
    epochs, offsets = np.divmod(stream, self.num_units)
    return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

  def packed_rows(self, step: int) -> list[list[int]]:
    """Packing: the example indices of each row of batch `step`, in column order."""
    return [self._packs[u] for u in self._units(step)]

  def example_indices(self, step: int) -> np.ndarray:
    """Indices into `examples` of batch `step`, in row order (each gives rows_per_example rows; with packing,
    row after row, each row's examples in column order)."""
    if not self.packing:
      return self._units(step)
    return np.array([i for row in self.packed_rows(step) for i in row], dtype=np.int64)

  def thought_dropped(self, step: int) -> np.ndarray:
    """[B] bool: which rows of batch `step` have their rationale replaced by an empty think block."""
    if not self.thought_dropout:
      return np.zeros((self.batch_size,), bool)
    draws = np.random.default_rng([self.seed, _THOUGHT_DROPOUT_STREAM, step]).random(self.batch_size)
    return draws < self.thought_dropout

  def rows(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """The rows of examples `indices`, laid out as a batch, without thought dropout (what a cache of teacher
    outputs on the training rows reads)."""
    return self._layout([[row] for i in indices for row in self._rows[i]])

  def batch(self, step: int) -> dict[str, np.ndarray]:
    if self.packing:
      return self._layout([[self._rows[i][0] for i in row] for row in self.packed_rows(step)], bucket=True)
    indices = self.example_indices(step)
    rows = [row for i in indices for row in self._rows[i]]
    for r in np.flatnonzero(self.thought_dropped(step)):
      rows[r] = self._no_thought[indices[r]]
    return self._layout([[row] for row in rows], bucket=True)

  def _layout(self, rows: list[list[_Row]], bucket: bool = False) -> dict[str, np.ndarray]:
    """rows[r] is the segments of row r, left to right: one example each (several only with packing)."""
    lengths = [[len(segment.prompt) + len(segment.completion) for segment in segments] for segments in rows]
    B, L = len(rows), self.max_len
    if bucket:
      L = bucket_width(max(sum(n) for n in lengths), self.max_len)
    tokens_BxL = np.full((B, L), self.tokenizer.pad_id, dtype=np.int32)
    positions_BxL = np.full((B, L), -1, dtype=np.int32)
    segment_ids_BxL = np.full((B, L), -1, dtype=np.int32)
    loss_mask_BxL = np.zeros((B, L), dtype=np.float32)
    for r, segments in enumerate(rows):
      start = 0
      for s, (segment, n) in enumerate(zip(segments, lengths[r])):
        end = start + n
        tokens_BxL[r, start:end] = segment.prompt + segment.completion
        positions_BxL[r, start:end] = np.arange(n)
        segment_ids_BxL[r, start:end] = s
        # Targets tokens[t+1] for t in [start+len(prompt)-1, end-2] are the completion tokens (eos included);
        # the eos column predicts the next segment's first token, which is never a target.
        loss_mask_BxL[r, start + len(segment.prompt) - 1:end - 1] = 1.0
        start = end
    out = {"tokens": tokens_BxL, "positions": positions_BxL, "loss_mask": loss_mask_BxL}
    if self.packing:
      out["segment_ids"] = segment_ids_BxL
    if self.step_by_step:
      rationale_task = np.array([segments[0].rationale_task for segments in rows], np.float32)
      out["rationale_mask"] = loss_mask_BxL * rationale_task[:, None]
    return out


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
  """Best-fit decreasing bin packing: the indices of `lengths` grouped into rows of at most `capacity` tokens.

  Longest first, each into the open row it fills most tightly, a new row only when none has room. Placing the
  long items first leaves the short ones to fill the gaps (next-fit closes a row for good at the first item that
  does not fit; in stream order, a long item that comes late finds only gaps too small for it). A row opens only
  when every open row has less room than the item, so every row but the last holds more than capacity minus the
  longest item. Each item is one bisection into the open rows' free room, kept sorted.
  """
  rows: list[list[int]] = []
  free = []  # (free columns, row), sorted
  for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
    slot = bisect.bisect_left(free, (lengths[i], -1))
    if slot == len(free):
      room, row = capacity, len(rows)
      rows.append([])
    else:
      room, row = free.pop(slot)
    rows[row].append(i)
    if room > lengths[i]:
      bisect.insort(free, (room - lengths[i], row))
  return rows


def bucket_width(longest: int, max_len: int, smallest: int = 32) -> int:
  """The smallest power of two times `smallest` that holds `longest` tokens, capped at max_len."""
  width = smallest
  while width < longest:
    width *= 2
  return min(width, max_len)
