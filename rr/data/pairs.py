"""(chosen, rejected) rationale pairs for contrastive rationale distillation (trainer "dpo", docs/methods.md).

The rejected side is the student's own wrong samples: a "teach" run of the student with teach.filters=wrong
(data.jsonl of {"question", "rationale", "answer", "provenance"} records, or any JSONL of such records). The
chosen side is the question's demonstration in the run's train split: the program teacher's rationale and
answer, or a teacher's records when data.rationales_path is set. Negative j of a question (in file order) pairs
with its demonstration j mod k (k demonstrations), so every negative is used once and the demonstrations in turn.
A record whose answer the task's verifier accepts is no negative: it is dropped and counted. Questions without
a negative give no pair. A record whose question is not in the split means the negatives were sampled on other
questions (another task, train_size or seed): one DataError naming the file and line.

PairBatches lays each batch out as rows 2i (chosen) and 2i+1 (rejected) of pair i, one prompt for both, as a
pure function of (seed, step) like rr.data.SFTBatches, so a resumed run reads the same batches.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np

from rr.config import ConfigError
from rr.data.errors import DataError
from rr.data.jsonl import rationale_example, read_jsonl
from rr.data.prompts import format_completion
from rr.data.sft_batches import SFTBatches, bucket_width
from rr.data.teacher_data import records_path
from rr.rewards.builtin import is_correct
from rr.tasks import Example

WHAT = "config.dpo.negatives"
# Seeds the pair permutations, [seed, 3, epoch], apart from SFTBatches' [seed, epoch] and its other streams.
_PAIR_STREAM = 3


@dataclasses.dataclass(frozen=True)
class Pair:
  chosen: Example  # the demonstration: its rationale and answer are the chosen completion
  rejected: Example  # the same example with the student's wrong rationale and answer
  line: int  # the negative's line in the negatives file


@dataclasses.dataclass(frozen=True)
class Pairs:
  pairs: list[Pair]
  path: str  # the negatives file read
  counts: dict[str, int]  # what was paired and what was not (the run's summary reports them as total/<name>)


def negatives_file(path: str) -> str:
  """The JSONL file config.dpo.negatives names: itself, or a teach workdir's data.jsonl."""
  if not path:
    raise ConfigError(f"trainer 'dpo' needs {WHAT}: the student's own wrong samples, written by a teach run of the "
                      "student (--config.trainer=teach --config.teach.teacher=<its SFT --workdir> "
                      "--config.teach.filters=wrong,dedup); set it to that run's --workdir or its data.jsonl")
  return records_path(path, WHAT, "a teach run's --workdir (teach.filters=wrong)")


def make_pairs(train: Sequence[Example], negatives: str, split: Sequence[Example] | None = None) -> Pairs:
  """The pairs of the negatives file `negatives` (config.dpo.negatives) with the demonstrations `train`.

  `split`: the train split before data.rationales_path swapped in a teacher's records (the questions a teach
  run of the student sampled, and their gold answers); None when `train` is that split. A negative of a split
  question the teacher left without a record pairs with nothing and is counted."""
  path = negatives_file(negatives)
  split = train if split is None else split
  gold = {}
  for example in split:
    gold.setdefault(example.question, example)
  demos: dict[str, list[Example]] = collections.defaultdict(list)
  for example in train:
    demos[example.question].append(example)
  records = read_jsonl(path, expect="with \"question\", \"rationale\" and \"answer\"")
  if not records:
    raise DataError(f"{path} ({WHAT}) holds no records: the teach run kept no wrong sample (see its summary.json "
                    "rejected/* counts); sample more questions or samples (teach.samples), or at a higher "
                    "teach.temperature")
  pairs, used = [], collections.Counter()
  counts = collections.Counter(negatives=len(records))
  for number, record in records:
    where = f"{path}, line {number}"
    negative = rationale_example(record, where)
    example = gold.get(negative.question)
    if example is None:
      raise DataError(f"{where}: question {negative.question[:60]!r} is not in this run's train split, so "
                      f"{WHAT} was sampled on other questions; config.data (task, train_size, difficulty or files) "
                      "and the seed of its questions (config.data.seed, else config.seed) must match the teach "
                      "run's")
    rejected = dataclasses.replace(example, rationale=negative.rationale, answer=negative.answer)
    if is_correct(format_completion(rejected), example):
      counts["negatives_right"] += 1
      continue
    if not demos[negative.question]:
      counts["negatives_without_demonstration"] += 1
      continue
    chosen = demos[negative.question][used[negative.question] % len(demos[negative.question])]
    used[negative.question] += 1
    pairs.append(Pair(chosen, dataclasses.replace(chosen, rationale=negative.rationale, answer=negative.answer),
                      number))
  if not pairs:
    raise DataError(f"{path} ({WHAT}) holds no wrong sample to pair: of its {len(records)} records, "
                    f"{counts['negatives_right']} have an answer the verifier accepts and "
                    f"{counts['negatives_without_demonstration']} a question without a demonstration; write it "
                    "with a teach run of the student with teach.filters=wrong,dedup")
  questions = {e.question for e in train}
  counts.update(pairs=len(pairs), questions=len(questions), questions_paired=len(used),
                questions_without_negative=len(questions) - len(used))
  return Pairs(pairs, path, {k: int(counts[k]) for k in ("pairs", "questions", "questions_paired",
                                                          "questions_without_negative", "negatives",
                                                          "negatives_right", "negatives_without_demonstration")})


class PairBatches:
  """batch(step) -> {tokens, positions, loss_mask} [2P, L] (P = batch_size / 2 pairs): rows 2i and 2i+1 are pair
  i's chosen and rejected completions after the same prompt, each "<think>" rationale "</think>" answer eos,
  loss_mask on the completion tokens (rr.data.SFTBatches' layout and buckets). The stream is epoch after epoch
  of a permutation of the pairs seeded by (seed, epoch), and step s takes its items [s*P, (s+1)*P)."""

  def __init__(self, pairs: Sequence[Pair], tokenizer, batch_size: int, max_len: int, seed: int):
    if batch_size < 2 or batch_size % 2:
      raise ValueError(f"PairBatches needs an even batch_size >= 2 (a chosen and a rejected row per pair), got "
                       f"{batch_size}")
    self.pairs = list(pairs)
    self.pairs_per_batch = batch_size // 2
    self.max_len = max_len
    self.seed = seed
    try:  # SFTBatches encodes the rows and checks they fit; its example 2i is pair i's chosen, 2i+1 its rejected
      self._rows = SFTBatches([e for p in self.pairs for e in (p.chosen, p.rejected)], tokenizer, batch_size,
                              max_len, seed)
    except DataError as e:
      raise DataError(f"{WHAT}: pair rows (example 2i is pair i's chosen, 2i+1 its rejected): {e}") from None
    self._permutations: dict[int, np.ndarray] = {}

  @property
  def steps_per_epoch(self) -> float:
    return len(self.pairs) / self.pairs_per_batch

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) >= 4:  # a batch spans at most a few epochs; keep memory flat
        self._permutations.clear()
      self._permutations[epoch] = np.random.default_rng([self.seed, _PAIR_STREAM, epoch]).permutation(len(self.pairs))
    return self._permutations[epoch]

  def pair_indices(self, step: int) -> np.ndarray:
    """Indices into `pairs` of batch `step`, in row order (pair i is rows 2i, 2i+1)."""
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}")
    stream = np.arange(step * self.pairs_per_batch, (step + 1) * self.pairs_per_batch)
    epochs, offsets = np.divmod(stream, len(self.pairs))
    return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets)], dtype=np.int64)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    rows = self._rows.rows([r for i in self.pair_indices(step) for r in (2 * i, 2 * i + 1)])
    width = bucket_width(int((rows["positions"] >= 0).sum(axis=1).max()), self.max_len)
    return {k: v[:, :width] for k, v in rows.items()}
