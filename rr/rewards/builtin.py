"""Built-in text rewards: factories that return a named reward callable (see rr.rewards.base).

Every one parses the completion with rr.data.prompts.parse_completion ("<think>" rationale "</think>" answer).
A completion may end its answer with a stated confidence line, which `calibration` reads and the others ignore:

  "<think>8+6+0=14\\n...</think>734\\nconfidence: 0.8"

The confidence line is the last line of the answer, `confidence: <number in [0, 1]>` (case-insensitive).
"""

from __future__ import annotations

import re
from typing import Callable

from rr import tasks
from rr.data.answers import VERIFIERS
from rr.data.prompts import parse_completion
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.rewards.base import RowReward
from rr.tasks import Example

_CONFIDENCE = re.compile(r"(?:^|\n)[ \t]*confidence:[ \t]*([0-9]*\.?[0-9]+)[ \t]*$", re.IGNORECASE)


def split_confidence(answer: str) -> tuple[str, float | None]:
  """(answer without its confidence line, stated confidence or None). A number outside [0, 1] is None."""
  match = _CONFIDENCE.search(answer)
  if match is None:
    return answer.strip(), None
  value = float(match.group(1))
  return answer[:match.start()].strip(), (value if 0.0 <= value <= 1.0 else None)


def _answer(completion: str) -> str:
  """The answer text, without a trailing confidence line."""
  return split_confidence(parse_completion(completion)[1])[0]


def _exact_match(answer: str, example: Example) -> bool:
  return " ".join(answer.split()) == " ".join(example.answer.split())


def verifier(task: str) -> Callable[[str, Example], bool]:
  """The one lookup from Example.task to its answer verifier (answer text, example) -> bool: exact match for
  user data (task ""), math_equal / choice_letter for benchmark data (rr.data.answers.VERIFIERS: gsm8k, math,
  choice), the task's own program for generated tasks (rr.tasks.TASKS)."""
  if not task:
    return _exact_match
  if task in VERIFIERS:
    return VERIFIERS[task]
  return tasks.get_task(task).verify


def step_checker(task: str) -> Callable[[str, Example], list[bool]] | None:
  """The task's step checker (rationale, example) -> one bool per step; None for user and benchmark data,
  whose rationales no program can check."""
  if not task or task in VERIFIERS:
    return None
  return tasks.get_task(task).check_steps


def is_correct(completion: str, example: Example) -> bool:
  """The task's verifier (see `verifier`) on the answer, the text after "</think>" without a confidence line."""
  return bool(verifier(example.task)(_answer(completion), example))


def correctness() -> RowReward:
  """1 if the answer is right (see is_correct), else 0."""
  return RowReward("correctness", lambda prompt, completion, example: float(is_correct(completion, example)))


def format_reward() -> RowReward:
  """1 if the completion is "<think>...</think>" (from its start, after whitespace, with one of each tag) then
  a non-empty answer (a confidence line alone does not count as an answer), else 0."""
  def score(prompt, completion, example):
    text = completion.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
      return 0.0
    return float(bool(split_confidence(text.partition(THINK_CLOSE)[2])[0]))
  return RowReward("format", score)


def length_penalty(target_len: int, scale: float = 1.0, length_fn: Callable[[str], int] = len) -> RowReward:
  """-scale * max(0, |y| - target_len) / target_len: 0 up to the target, then linear in the relative excess
  (-scale at twice the target). |y| = length_fn(completion), characters by default; pass a token counter
  (e.g. lambda s: len(tokenizer.encode(s))) to count tokens."""
  if target_len <= 0:
    raise ValueError(f"length_penalty: target_len must be > 0, got {target_len}")
  def score(prompt, completion, example):
    return -scale * max(0, length_fn(completion) - target_len) / target_len
  return RowReward("length_penalty", score)


def overlong_shaping(max_len: int, cache_len: int, length_fn: Callable[[str], int] = len) -> RowReward:
  """DAPO soft overlong punishment, with Lmax = max_len and Lc = cache_len:
  0 if |y| <= Lmax - Lc; ((Lmax - Lc) - |y|) / Lc if Lmax - Lc < |y| <= Lmax (falls linearly to -1); -1 beyond.
  |y| = length_fn(completion), characters by default; pass a token counter to match the sampler's budget."""
  if not 0 < cache_len <= max_len:
    raise ValueError(f"overlong_shaping: need 0 < cache_len <= max_len, got cache_len={cache_len}, "
                     f"max_len={max_len}")
  def score(prompt, completion, example):
    length, soft = length_fn(completion), max_len - cache_len
    if length <= soft:
      return 0.0
    if length <= max_len:
      return (soft - length) / cache_len
    return -1.0
  return RowReward("overlong", score)


def calibration(mode: str = "brier") -> RowReward:
  """SaySelf-style: the answer ends with "confidence: c", c in [0, 1]; correct = 1 or 0 (is_correct).
    brier   R = 1 - 2 * (correct - c)^2        in [-1, 1]
    linear  R = c if correct else -c           in [-1, 1]
  No parsable confidence (missing, not a number, outside [0, 1]) gets -1, the lowest value either mode gives:
  a neutral default (c = 0.5, brier 0.5) would beat a stated confidence on a wrong answer, so the policy
  would learn to stop stating one."""
  if mode not in ("brier", "linear"):
    raise ValueError(f"calibration: mode={mode!r}; choose 'brier' or 'linear'")
  def score(prompt, completion, example):
    confidence = split_confidence(parse_completion(completion)[1])[1]
    if confidence is None:
      return -1.0
    correct = float(is_correct(completion, example))
    if mode == "brier":
      return 1.0 - 2.0 * (correct - confidence) ** 2
    return confidence if correct else -confidence
  return RowReward(f"calibration_{mode}", score)


def step_correctness() -> RowReward:
  """Process reward: the fraction of rationale steps the task's step checker accepts; 0 with no steps, and 0
  for user and benchmark data, which have no step checker (see `step_checker`)."""
  def score(prompt, completion, example):
    check = step_checker(example.task)
    if check is None:
      return 0.0
    steps = check(parse_completion(completion)[0], example)
    return sum(steps) / len(steps) if steps else 0.0
  return RowReward("step_correctness", score)
