"""Built-in text rewards: factories that return a named reward callable (see rr.rewards.base), each registered
under its config name (rr.rewards.registry) right after its definition, the way a user registers their own.

Every one parses the completion with rr.data.prompts.parse_completion ("<think>" rationale "</think>" answer).
A completion may end its answer with a stated confidence line, which `calibration` reads and the others ignore:

  "<think>8+6+0=14\\n...</think>734\\nconfidence: 0.8"

The confidence line is the last line of the answer, `confidence: <number in [0, 1]>` (case-insensitive).
"""

from __future__ import annotations

import re
from typing import Callable

import jax.numpy as jnp

from rr import tasks
from rr.data.answers import VERIFIERS
from rr.data.prompts import answer_part, parse_completion
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.rewards.base import RowReward, TokenReward
from rr.rewards.registry import register
from rr.tasks import Example

_CONFIDENCE = re.compile(r"(?:^|\n)[ \t]*confidence:[ \t]*([0-9]*\.?[0-9]+)[ \t]*$", re.IGNORECASE)


def split_confidence(answer: str) -> tuple[str, float | None]:
  """(answer without its confidence line, stated confidence or None). A number outside [0, 1] is None."""
  match = _CONFIDENCE.search(answer)
  if match is None:
    return answer.strip(), None
  value = float(match.group(1))
  return answer[:match.start()].strip(), (value if 0.0 <= value <= 1.0 else None)


def completion_answer(completion) -> str | None:
  """The answer of a completion, the one definition every reward here and rr.eval.scoring share: the text
  after the last "</think>" without its confidence line. None (unparsed, so wrong) when a "<think>" is never
  closed or nothing is left, e.g. a confidence line alone."""
  raw = answer_part(completion)
  if raw is None:
    return None
  return split_confidence(raw)[0] or None


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


def chain_checker(task: str) -> Callable[[str, Example], bool] | None:
  """The task's whole-chain check (rationale, example) -> bool: every step it needs written and right, nothing
  else (Task.check_chain); None for user and benchmark data, as for `step_checker`."""
  if not task or task in VERIFIERS:
    return None
  return tasks.get_task(task).check_chain


def is_correct(completion: str, example: Example) -> bool:
  """The task's verifier (see `verifier`) on the completion's answer (see `completion_answer`); False when
  there is none."""
  answer = completion_answer(completion)
  return answer is not None and bool(verifier(example.task)(answer, example))


def correctness() -> RowReward:
  """1 if the answer is right (see is_correct), else 0."""
  return RowReward("correctness", lambda prompt, completion, example: float(is_correct(completion, example)))


register("correctness")(correctness())


def format_reward() -> RowReward:
  """1 if the completion is "<think>...</think>" (from its start, after whitespace, with one of each tag) then
  a non-empty answer (a confidence line alone does not count as an answer), else 0."""
  def score(prompt, completion, example):
    text = completion.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
      return 0.0
    return float(completion_answer(text) is not None)
  return RowReward("format", score)


register("format")(format_reward())


def sampled_length(mask_NxC):
  """Tokens each row generated, eos included: mask_NxC marks what the sampler generated (its `lengths`), the
  count that `rl.max_new_tokens` budgets. Decoding and re-encoding the text would not give it back: decoding
  drops eos and pads, and re-encoding can merge or split tokens (7 sampled characters "<think>" re-encode as
  one token). Jittable."""
  return jnp.sum(jnp.asarray(mask_NxC, jnp.float32), axis=1)


def length_penalty(target_len: int, scale: float = 1.0) -> TokenReward:
  """-scale * max(0, L - target_len) / target_len: 0 up to the target, then linear in the relative excess
  (-scale at twice the target). L = the sampled completion's token count, eos included (`sampled_length`)."""
  if target_len <= 0:
    raise ValueError(f"length_penalty: target_len must be > 0, got {target_len}")
  def score(tokens_NxC, mask_NxC, params):
    return -scale * jnp.maximum(0.0, sampled_length(mask_NxC) - target_len) / target_len
  return TokenReward("length_penalty", score)


register("length_penalty", factory=True)(lambda rl, tokenizer: length_penalty(rl.length_target))


def overlong_shaping(max_len: int, cache_len: int) -> TokenReward:
  """DAPO soft overlong punishment, with Lmax = max_len and Lc = cache_len:
  0 if L <= Lmax - Lc; ((Lmax - Lc) - L) / Lc if Lmax - Lc < L <= Lmax (falls linearly to -1); -1 beyond.
  L = the sampled completion's token count, eos included (`sampled_length`), so with Lmax = rl.max_new_tokens
  a completion that used the whole budget gets -1 whether or not its last token was eos."""
  if not 0 < cache_len <= max_len:
    raise ValueError(f"overlong_shaping: need 0 < cache_len <= max_len, got cache_len={cache_len}, "
                     f"max_len={max_len}")
  soft = max_len - cache_len
  def score(tokens_NxC, mask_NxC, params):
    length = sampled_length(mask_NxC)
    return jnp.where(length <= soft, 0.0, jnp.where(length <= max_len, (soft - length) / cache_len, -1.0))
  return TokenReward("overlong", score)


# DAPO's setting: the hard limit is the sampling budget, so a completion cut off there gets -1.
register("overlong", factory=True)(lambda rl, tokenizer: overlong_shaping(rl.max_new_tokens, rl.overlong_buffer))


# A line that starts like a confidence line, whatever follows: a second one left in the answer voids both.
_CONFIDENCE_START = re.compile(r"(?:^|\n)[ \t]*confidence[ \t]*:", re.IGNORECASE)

CALIBRATION_FORMS = {"rlcr": "calibration", "brier": "calibration_brier", "linear": "calibration_linear"}


def stated_confidence(completion: str) -> float | None:
  """The one confidence the answer states (`split_confidence` on the answer part, as `completion_answer`
  reads it), or None. Two confidence lines are no confidence: the policy could otherwise hedge with one and be
  scored on the other. A confidence written only inside the rationale, or after a "<think>" never closed, is
  not stated."""
  raw = answer_part(completion)
  if raw is None:
    return None
  answer, confidence = split_confidence(raw)
  if confidence is None or _CONFIDENCE_START.search(answer):
    return None
  return confidence


def calibration(mode: str = "rlcr") -> RowReward:
  """Rewards a stated confidence c ("confidence: c" as the answer's last line, c in [0, 1]); y = 1 if the
  answer is right (is_correct), else 0.
    rlcr    R = y - (c - y)^2       in [-1, 1]; reward name "calibration" (the `rl.rewards` default form).
            RLCR (2507.16806): correctness plus a proper (Brier) scoring term. Expected reward
            p - (p(1-c)^2 + (1-p)c^2) is maximised at c = p, and there equals p^2, rising with pass rate p.
    brier   R = 1 - 2 (y - c)^2     in [-1, 1]; "calibration_brier". Proper in c, but a sure wrong answer
            ("confidence: 0") earns the maximum 1, so added to correctness with more than half its weight it
            makes expected reward fall with accuracy at low pass rates (rr.rewards.incentives; grpo refuses).
    linear  R = c if y else -c      in [-1, 1]; "calibration_linear". SaySelf's RL reward (2405.20974). Not a
            proper scoring rule: expected reward c(2p - 1) is maximised at c = 0 or 1, never at c = p, so it
            pushes stated confidence to the extremes instead of to the pass rate.
  No usable confidence gets -1, the lowest value every form can give, so leaving it out never pays: a missing
  line, a number outside [0, 1] or not a plain decimal (1e9, 0.5abc, -0.2), two confidence lines, or one
  only inside the rationale (`stated_confidence`). A neutral default (say c = 0.5) would beat an honest
  confidence on a wrong answer, and the policy would learn to stop stating one."""
  if mode not in CALIBRATION_FORMS:
    raise ValueError(f"calibration: mode={mode!r}; choose one of {sorted(CALIBRATION_FORMS)}")
  def score(prompt, completion, example):
    confidence = stated_confidence(completion)
    if confidence is None:
      return -1.0
    correct = float(is_correct(completion, example))
    if mode == "rlcr":
      return correct - (confidence - correct) ** 2
    if mode == "brier":
      return 1.0 - 2.0 * (correct - confidence) ** 2
    return confidence if correct else -confidence
  return RowReward(CALIBRATION_FORMS[mode], score)


for _mode, _name in CALIBRATION_FORMS.items():
  register(_name)(calibration(_mode))


def step_correctness() -> RowReward:
  """Process reward: the task's Task.step_score of the rationale, right steps over the steps a whole chain
  needs (at least those written), so a missing step counts as a wrong one and writing less never pays; 1.0
  exactly for a whole right chain (Task.check_chain). It does not read the answer (`gate` ties it to the
  outcome). 0 with no steps, and 0 for user and benchmark data, which have no step checker."""
  def score(prompt, completion, example):
    if step_checker(example.task) is None:
      return 0.0
    return float(tasks.get_task(example.task).step_score(parse_completion(completion)[0], example))
  return RowReward("step_correctness", score)


register("step_correctness")(step_correctness())
