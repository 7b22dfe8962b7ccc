"""One completion scored against its example: the one place answers, rationale steps and stated confidences
are read, for the training loops' periodic evaluation (`evaluate_accuracy`) and `python -m rr.eval` alike.

The answer is rr.rewards.builtin.completion_answer, the same definition the rewards pay on, so a completion
the evaluation counts wrong never earns the correctness reward. It is "unparsed" (None) when there is none
to read: an opened "<think>" that is never closed (the model ran out of tokens while thinking), or nothing
but whitespace (and a confidence line) where the answer should be. Unparsed completions count as wrong;
nothing here raises on a completion's text. Generated tasks verify answers, check whole chains and say what
an answer means with their own programs; user data (no task name) is scored by exact match on
whitespace-normalised answers, benchmark data (tasks gsm8k, math, choice) by math_equal or the chosen letter;
neither has a step check (rr.rewards.builtin.verifier / chain_checker). docs/methods.md, "Scoring".
"""

from __future__ import annotations

import dataclasses

from rr import tasks
from rr.data import parse_completion
from rr.data.answers import VERIFIERS, vote_key
from rr.rewards.builtin import chain_checker, completion_answer, is_correct, stated_confidence


@dataclasses.dataclass(frozen=True)
class Scored:
  """One completion, scored against its example."""
  text: str
  answer: str | None  # the vote key: what the answer means (Task.vote_key for generated tasks, e.g. a number's
  #                     value; rr.data.answers.vote_key for data tasks, e.g. a choice letter; whitespace-normalised
  #                     text for user data); None when unparsed
  correct: bool  # the task's verifier (rr.rewards.builtin.verifier) accepts the answer; False when unparsed
  steps_ok: bool | None  # correct AND the rationale is a whole right chain (Task.check_chain); None without one
  confidence: float | None  # the stated "confidence: c" in [0, 1], if any
  length: int  # generated tokens, eos included


def answer_vote_key(answer_text: str, example) -> str | None:
  """What an answer means for maj@k, so that answers the verifier cannot tell apart are one vote."""
  if example.task in VERIFIERS:
    return vote_key(answer_text, example)
  if example.task:
    return tasks.get_task(example.task).vote_key(answer_text, example)
  return " ".join(answer_text.split())


def score(example, text: str, length: int) -> Scored:
  """Scores one completion; never raises on its text."""
  answer_text = completion_answer(text)
  answer = None if answer_text is None else answer_vote_key(answer_text, example)
  correct = answer is not None and bool(is_correct(text, example))
  steps_ok = None
  check = chain_checker(example.task)
  if check is not None:
    steps_ok = bool(correct and check(parse_completion(text)[0], example))
  confidence = stated_confidence(text)  # the calibration reward's reading: two confidence lines are none
  return Scored(text=text, answer=answer, correct=correct, steps_ok=steps_ok, confidence=confidence,
                length=int(length))
