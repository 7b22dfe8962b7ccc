"""Composed string transformations f(g(x)) on short lowercase strings.

Difficulty k = number of composed functions (k >= 1). The input is 3-6 random lowercase letters; functions are
drawn from FUNCTIONS, never the same one twice in a row and "dup" at most once (so lengths stay short), and an
instance whose value becomes empty is redrawn. The rationale applies one function per line, innermost first:

  question  "rev(up(abc))"
  rationale "up(abc)=ABC\nrev(ABC)=CBA"
  answer    "CBA"

Answers are compared exactly (after stripping surrounding whitespace), so they vote exactly too. A whole
chain is exactly one right step per function, innermost first (docs/methods.md, "Scoring").
"""

from __future__ import annotations

import string

import numpy as np

from rr.tasks.base import Example, TaskError, rationale_steps, share_right, text_key, whole_chain

VOWELS = frozenset("aeiouAEIOU")
FUNCTIONS = {
    "rev": lambda s: s[::-1],  # reverse
    "rot": lambda s: s[1:] + s[:1],  # rotate left by one
    "up": lambda s: s.upper(),  # upper case
    "swp": lambda s: s.swapcase(),  # swap case
    "nov": lambda s: "".join(c for c in s if c not in VOWELS),  # drop vowels
    "dup": lambda s: s + s,  # duplicate
    "srt": lambda s: "".join(sorted(s)),  # sort characters (code-point order: upper case first)
}
MIN_LETTERS, MAX_LETTERS = 3, 6


def intermediates(text: str, functions: tuple[str, ...]) -> list[str]:
  """[x, f1(x), f2(f1(x)), ...] for functions listed innermost first."""
  values = [text]
  for name in functions:
    values.append(FUNCTIONS[name](values[-1]))
  return values


def teacher_steps(text: str, functions: tuple[str, ...]) -> list[str]:
  values = intermediates(text, functions)
  return [f"{name}({values[i]})={values[i + 1]}" for i, name in enumerate(functions)]


class StringsTask:
  name = "strings"

  def generate(self, rng: np.random.Generator, difficulty: int) -> Example:
    if difficulty < 1:
      raise TaskError(f"strings difficulty is the number of composed functions; it must be >= 1, got {difficulty}")
    names = sorted(FUNCTIONS)
    for _ in range(1000):
      length = int(rng.integers(MIN_LETTERS, MAX_LETTERS + 1))
      text = "".join(rng.choice(list(string.ascii_lowercase), size=length))
      functions: list[str] = []
      while len(functions) < difficulty:
        name = names[int(rng.integers(len(names)))]
        if (functions and functions[-1] == name) or (name == "dup" and "dup" in functions):
          continue
        functions.append(name)
      values = intermediates(text, tuple(functions))
      if all(values):
        question = text
        for name in functions:
          question = f"{name}({question})"
        return Example(question=question, rationale="\n".join(teacher_steps(text, tuple(functions))),
                       answer=values[-1], difficulty=difficulty, task=self.name, meta=(text, tuple(functions)))
    raise TaskError(f"strings could not build an instance at difficulty {difficulty} in 1000 tries")

  def verify(self, answer_text: str, example: Example) -> bool:
    try:
      text, functions = example.meta
      return answer_text.strip() == intermediates(text, tuple(functions))[-1]
    except Exception:  # junk of any type is a wrong answer, never a crash
      return False

  def check_steps(self, rationale: str, example: Example) -> list[bool]:
    """Step i is right iff it applies the i-th innermost function to the true value before it, correctly."""
    expected = _expected_steps(example)
    return [i < len(expected) and step == expected[i] for i, step in enumerate(rationale_steps(rationale))]

  def check_chain(self, rationale: str, example: Example) -> bool:
    """Exactly one right step per function, innermost first; a missing or extra step breaks the chain."""
    return whole_chain(self.check_steps(rationale, example), len(_expected_steps(example)))

  def step_score(self, rationale: str, example: Example) -> float:
    """Right steps / max(steps written, functions)."""
    return share_right(self.check_steps(rationale, example), len(_expected_steps(example)))

  def vote_key(self, answer_text: str, example: Example) -> str:
    """The stripped answer text: `verify` compares exactly, so only identical answers share a vote."""
    return answer_text.strip() if isinstance(answer_text, str) else text_key(answer_text)


def _expected_steps(example: Example) -> list[str]:
  """The teacher's steps for this example; [] when its meta is not (text, functions)."""
  try:
    return teacher_steps(*example.meta)
  except Exception:
    return []
