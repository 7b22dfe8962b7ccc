"""Rewards that shape a rationale's form: its length (cosine), its repetition, and skipping the thought on easy
questions (docs/methods.md, "Shaping rewards"). Each is registered under its config name as a factory, since each
reads config.rl (and the first two the tokenizer's eos id).

  cosine_length  (2502.03373) correctness shaped by the sampled length L along a cosine, from a *_short value at
                 L = 0 to a *_long one at L = rl.max_new_tokens; rl.cosine_exceed for a row cut off without eos.
                 It replaces correctness as the outcome reward.
  repetition     minus the share of the completion's token n-grams (n = rl.repetition_ngram) that repeat an
                 earlier one of the same completion.
  think_skip     (TON 2505.16854, AdaR1) 1 for a right answer after an empty "<think></think>" on a question of
                 level <= rl.easy_difficulty, else 0; weighted next to correctness.

The first two read token ids and the text together, so they are `RolloutReward`s (a `TokenReward` sees no text, a
`RowReward` no token count); they score with no model, so `bind` has nothing to place.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.rewards.base import RolloutReward, RolloutView, RowReward
from rr.rewards.builtin import is_correct
from rr.rewards.registry import register
from rr.tasks import Example


def generated_lengths(mask_NxC) -> np.ndarray:
  """Tokens each row generated, eos included: the count rr.rewards.builtin.sampled_length gives, on the host."""
  return np.asarray(mask_NxC, bool).sum(axis=1)


def ended_with_eos(tokens_NxC, mask_NxC, eos_id: int) -> np.ndarray:
  """bool [N]: the row's last generated token is eos, so it was not cut at rl.max_new_tokens (the rule of
  TrainBatch.has_eos and the teach trainer's `finished`)."""
  tokens_NxC = np.asarray(tokens_NxC)
  lengths = generated_lengths(mask_NxC)
  last = tokens_NxC[np.arange(len(lengths)), np.maximum(lengths - 1, 0)]
  return (lengths > 0) & (last == eos_id)


# ------------------------------------------------------------------------------------------ cosine length


@dataclasses.dataclass(frozen=True)
class CosineCurve:
  """short at L = 0, long at L = max_len, along half a cosine: long + (short - long) * (1 + cos(pi L / max_len)) / 2."""
  short: float
  long: float

  def at(self, length, max_len: int) -> np.ndarray:
    fraction = np.clip(np.asarray(length, np.float64), 0, max_len) / max_len
    return self.long + (self.short - self.long) * (1.0 + np.cos(np.pi * fraction)) / 2.0


class CosineLength(RolloutReward):
  """Yeo et al.'s cosine reward (2502.03373): `correct` along L for a right answer, `wrong` for a wrong (or
  unparsed) one, `exceed` for a row that never sampled eos. L = generated tokens, eos included."""
  name = "cosine_length"

  def __init__(self, correct: CosineCurve, wrong: CosineCurve, exceed: float, max_len: int, eos_id: int):
    self.correct, self.wrong, self.exceed, self.max_len, self.eos_id = correct, wrong, exceed, max_len, eos_id

  def score(self, view: RolloutView) -> np.ndarray:
    lengths = generated_lengths(view.mask_NxC)
    right = np.array([is_correct(c, e) for c, e in zip(view.completions, view.examples, strict=True)], bool)
    shaped = np.where(right, self.correct.at(lengths, self.max_len), self.wrong.at(lengths, self.max_len))
    finished = ended_with_eos(view.tokens_NxC, view.mask_NxC, self.eos_id)
    return np.where(finished, shaped, self.exceed).astype(np.float32)


def cosine_length(correct_short: float, correct_long: float, wrong_short: float, wrong_long: float, exceed: float,
                  max_len: int, eos_id: int) -> CosineLength:
  """The cosine reward, refused (ValueError naming the config.rl keys) where the outcome would not pay: a wrong
  answer earning at least a right one of the same length (both curves are affine in one cosine term, so checking
  both ends checks every length), or a cut-off row earning at least the best finished wrong answer (then a policy
  that cannot be right loses nothing by never finishing)."""
  values = dict(cosine_correct_short=correct_short, cosine_correct_long=correct_long, cosine_wrong_short=wrong_short,
                cosine_wrong_long=wrong_long, cosine_exceed=exceed)
  bad = [f"rl.{key}={value!r}" for key, value in values.items()
         if not isinstance(value, (int, float)) or not math.isfinite(value)]
  if bad:
    raise ValueError(f"cosine_length: {', '.join(bad)} must be finite numbers")
  if max_len <= 0:
    raise ValueError(f"cosine_length: rl.max_new_tokens={max_len} must be > 0 (it is the cosine's Lmax)")
  for end in ("short", "long"):
    right, wrong = values[f"cosine_correct_{end}"], values[f"cosine_wrong_{end}"]
    if right <= wrong:
      length = "0 tokens" if end == "short" else "rl.max_new_tokens tokens"
      raise ValueError(f"cosine_length: rl.cosine_correct_{end}={right:g} must be above rl.cosine_wrong_{end}="
                       f"{wrong:g}, else a wrong answer of {length} earns at least a right one as long; raise the "
                       "first or lower the second (the paper: correct 2 -> 1, wrong -10 -> 0)")
  if exceed >= max(wrong_short, wrong_long):
    raise ValueError(f"cosine_length: rl.cosine_exceed={exceed:g} must be below the best a finished wrong answer "
                     f"earns (max(rl.cosine_wrong_short, rl.cosine_wrong_long) = {max(wrong_short, wrong_long):g}), "
                     "else a policy that cannot answer right earns as much by never finishing; lower it (the "
                     "paper: -10)")
  return CosineLength(CosineCurve(float(correct_short), float(correct_long)),
                      CosineCurve(float(wrong_short), float(wrong_long)), float(exceed), int(max_len), int(eos_id))


register("cosine_length", factory=True)(
    lambda rl, tokenizer: cosine_length(rl.cosine_correct_short, rl.cosine_correct_long, rl.cosine_wrong_short,
                                        rl.cosine_wrong_long, rl.cosine_exceed, rl.max_new_tokens, tokenizer.eos_id))


# ------------------------------------------------------------------------------------------ repetition


def repeated_ngram_share(ids: Sequence[int], n: int) -> float:
  """Of the len(ids) - n + 1 n-grams of `ids`, the share that repeat an earlier one (count minus distinct, over
  count); 0.0 for fewer than n ids."""
  ids = [int(i) for i in ids]
  count = len(ids) - n + 1
  if count <= 0:
    return 0.0
  distinct = {tuple(ids[i:i + n]) for i in range(count)}
  return (count - len(distinct)) / count


class Repetition(RolloutReward):
  """-repeated_ngram_share of each completion's ids up to its eos (eos itself left out: it ends the text, and an
  n-gram holding it is never a repeat)."""
  name = "repetition"

  def __init__(self, ngram: int, eos_id: int):
    self.ngram, self.eos_id = ngram, eos_id

  def score(self, view: RolloutView) -> np.ndarray:
    tokens_NxC = np.asarray(view.tokens_NxC)
    lengths = generated_lengths(view.mask_NxC)
    finished = ended_with_eos(tokens_NxC, view.mask_NxC, self.eos_id)
    return np.array([-repeated_ngram_share(row[:length - int(done)], self.ngram)
                     for row, length, done in zip(tokens_NxC, lengths, finished)], np.float32)


def repetition(ngram: int, eos_id: int) -> Repetition:
  if not isinstance(ngram, int) or ngram < 1:
    raise ValueError(f"repetition: rl.repetition_ngram={ngram!r} must be an integer >= 1 (tokens per n-gram)")
  return Repetition(ngram, int(eos_id))


register("repetition", factory=True)(lambda rl, tokenizer: repetition(rl.repetition_ngram, tokenizer.eos_id))


# ------------------------------------------------------------------------------------------ think skip


def skipped_thought(completion) -> bool:
  """The completion is "<think>", nothing but whitespace, "</think>", then its answer: one of each tag, the
  first at the start (after whitespace), so no reasoning can sit before the block or in a second one."""
  if not isinstance(completion, str):
    return False
  text = completion.strip()
  if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
    return False
  return not text[len(THINK_OPEN):text.index(THINK_CLOSE)].strip()


def think_skip(easy_difficulty: int) -> RowReward:
  """1 when the answer is right (is_correct), the thought was skipped (`skipped_thought`) and the question's level
  is 1..easy_difficulty, else 0. Level 0 is rr's "no level known" (user data, GSM8K, multiple choice, MATH without
  one), never easy: a bonus for skipping on every question of such data would teach the policy never to think."""
  if not isinstance(easy_difficulty, int) or easy_difficulty < 1:
    raise ValueError(f"think_skip: rl.easy_difficulty={easy_difficulty!r} must be an integer >= 1 (the highest "
                     "level that counts as easy; levels start at 1, and 0 is a question with no level)")

  def score(prompt: str, completion: str, example: Example) -> float:
    easy = 1 <= example.difficulty <= easy_difficulty
    return float(easy and skipped_thought(completion) and is_correct(completion, example))

  return RowReward("think_skip", score)


register("think_skip", factory=True)(lambda rl, tokenizer: think_skip(rl.easy_difficulty))
