"""Multi-digit addition with carries: the main training task.

Difficulty d = number of digits: both operands are drawn uniformly among the numbers with exactly d digits
(10^(d-1) .. 10^d - 1; 0 .. 9 when d = 1), so every column sits at a fixed place in the question.

The rationale has one line per column, least significant first, in a fixed layout
"<digit of a>+<digit of b>+<carry in>=<two-digit column sum>", whose tens digit is the carry out:

  question  "478+256"
  rationale "8+6+0=14\n7+5+1=13\n4+2+1=07"
  answer    "734"   (the normal-order number; a final carry adds a leading 1)

Digits are ASCII only: Python's int() and re's digit class also read e.g. Arabic-Indic digits, which no
teacher writes, so they are wrong here. An answer with leading zeros ("0734") has the right value and is
right, and votes with "734". A whole chain is exactly one right step per column, in order (docs/methods.md, "Scoring").
"""

from __future__ import annotations

import re

import numpy as np

from rr.tasks.base import Example, TaskError, rationale_steps, share_right, text_key, whole_chain

_STEP = re.compile(r"([0-9])\+([0-9])\+([0-9])=([0-9]{1,2})")
_NUMBER = re.compile(r"[0-9]{1,40}")  # bounded, so int() never meets a huge string


def _columns(a: int, b: int, digits: int) -> list[tuple[int, int, int, int]]:
  """(digit of a, digit of b, carry in, column sum) per column, least significant first."""
  columns, carry = [], 0
  for i in range(digits):
    da, db = (a // 10**i) % 10, (b // 10**i) % 10
    total = da + db + carry
    columns.append((da, db, carry, total))
    carry = total // 10
  return columns


class AdditionTask:
  name = "addition"

  def generate(self, rng: np.random.Generator, difficulty: int) -> Example:
    if difficulty < 1:
      raise TaskError(f"addition difficulty is the number of digits; it must be >= 1, got {difficulty}")
    low = 0 if difficulty == 1 else 10 ** (difficulty - 1)
    a, b = (int(x) for x in rng.integers(low, 10**difficulty, size=2))
    rationale = "\n".join(f"{da}+{db}+{c}={s:02d}" for da, db, c, s in _columns(a, b, difficulty))
    return Example(question=f"{a}+{b}", rationale=rationale, answer=str(a + b), difficulty=difficulty,
                   task=self.name, meta=(a, b))

  def verify(self, answer_text: str, example: Example) -> bool:
    try:
      a, b = example.meta
      text = answer_text.strip()
      return bool(_NUMBER.fullmatch(text)) and int(text) == a + b
    except Exception:  # junk of any type is a wrong answer, never a crash
      return False

  def check_steps(self, rationale: str, example: Example) -> list[bool]:
    """Step i is right iff it adds the i-th digits of both operands and the true carry into that column."""
    columns = _example_columns(example)
    results = []
    for i, step in enumerate(rationale_steps(rationale)):
      match = _STEP.fullmatch(step)
      if match is None or i >= len(columns):
        results.append(False)
        continue
      written = tuple(int(g) for g in match.groups())
      results.append(written == columns[i])
    return results

  def check_chain(self, rationale: str, example: Example) -> bool:
    """Exactly one right step per column, least significant first; a missing or extra step breaks the chain."""
    return whole_chain(self.check_steps(rationale, example), len(_example_columns(example)))

  def step_score(self, rationale: str, example: Example) -> float:
    """Right steps / max(steps written, columns)."""
    return share_right(self.check_steps(rationale, example), len(_example_columns(example)))

  def vote_key(self, answer_text: str, example: Example) -> str:
    """The number's value for a number ("0734" and "734" are one vote), else the text."""
    text = answer_text.strip() if isinstance(answer_text, str) else ""
    return str(int(text)) if _NUMBER.fullmatch(text) else text_key(answer_text)


def _example_columns(example: Example) -> list[tuple[int, int, int, int]]:
  """The columns a right rationale for this example writes; [] when its meta is not two integers."""
  try:
    a, b = example.meta
    return _columns(a, b, max(len(str(a)), len(str(b))))
  except Exception:
    return []
