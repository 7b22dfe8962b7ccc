"""One completion scored against its example: the one place answers, rationale steps and stated confidences
are read, for the training loops' periodic evaluation (`evaluate_accuracy`) and `python -m rr.eval` alike.

A completion's answer is "unparsed" (None) when it has no answer to read: an opened "<think>" that is never
closed (the model ran out of tokens while thinking), or nothing but whitespace (and a confidence line) where
the answer should be. Unparsed completions count as wrong; nothing here raises on a completion's text.
Generated tasks verify answers and check steps with their own programs; user data (no task name) is scored
by exact match on whitespace-normalised answers, benchmark data (tasks gsm8k, math, choice) by math_equal or
the chosen letter; neither has a step check (rr.rewards.builtin.verifier / step_checker).
"""

from __future__ import annotations

import dataclasses

from rr.data import THINK_CLOSE, THINK_OPEN, parse_completion
from rr.data.answers import VERIFIERS, vote_key
from rr.rewards.builtin import is_correct, split_confidence, step_checker


@dataclasses.dataclass(frozen=True)
class Scored:
  """One completion, scored against its example."""
  text: str
  answer: str | None  # the vote key: whitespace-normalised answer text, or for data tasks what it means
  #                     (rr.data.answers.vote_key: a choice letter, a normalised number); None when unparsed
  correct: bool  # the task's verifier (rr.rewards.builtin.verifier) accepts the answer; False when unparsed
  steps_ok: bool | None  # correct AND every rationale step passes the step checker; None without a checker
  confidence: float | None  # the stated "confidence: c" in [0, 1], if any
  length: int  # generated tokens, eos included


def score(example, text: str, length: int) -> Scored:
  """Scores one completion; never raises on its text."""
  rationale, raw_answer = parse_completion(text)
  answer_text, confidence = split_confidence(raw_answer)
  unclosed = THINK_OPEN in text and THINK_CLOSE not in text
  answer = None if unclosed or not answer_text.strip() else " ".join(answer_text.split())
  if answer is not None and example.task in VERIFIERS:  # data tasks vote on what the answer means
    answer = vote_key(answer_text, example)
  correct = answer is not None and bool(is_correct(text, example))
  steps_ok = None
  check = step_checker(example.task)
  if check is not None:
    steps = check(rationale, example)
    steps_ok = bool(correct and len(steps) > 0 and all(steps))
  return Scored(text=text, answer=answer, correct=correct, steps_ok=steps_ok, confidence=confidence,
                length=int(length))
