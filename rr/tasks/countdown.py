"""Countdown: reach a target from source numbers with + - * / (division only when exact).

Difficulty n = number of source numbers (n >= 2). The generator builds a solvable instance by construction: it
draws n sources and combines two available numbers at a time with a random legal operation until one number
is left, the target. Every intermediate is a positive integer <= MAX_VALUE; x*1, x/1 and results that equal
zero are never used, and the target never equals a source.

  question  "25,4,3->103"            (sources, then the target)
  rationale "25*4=100\n100+3=103"    (one operation per line; operands are sources or earlier results)
  answer    "(25*4)+3"               (any expression using each source at most once is accepted)

Expressions are read by a small recursive-descent parser (numbers, + - * /, parentheses); nothing is eval'd.
Digits are ASCII only. A whole chain is at least one step, every step right, the last one's result the
target; it need not use every source, as an answer need not (docs/methods.md, "Scoring"). Answers vote by
meaning: two expressions with the same value from the same multiset of numbers are one vote.
"""

from __future__ import annotations

import collections
import re

import numpy as np

from rr.tasks.base import Example, TaskError, rationale_steps, text_key

MAX_VALUE = 999
SMALL_NUMBERS = tuple(range(1, 11))
LARGE_NUMBERS = (25, 50, 75, 100)
MAX_ANSWER_CHARS = 200
_STEP = re.compile(r"([0-9]{1,6})([-+*/])([0-9]{1,6})=([0-9]{1,7})")
_TOKEN = re.compile(r"\s*([0-9]{1,9}|[-+*/()])")


class ExpressionError(ValueError):
  """Text that is not a well-formed integer expression, or a division that is not exact."""


def apply_op(a: int, op: str, b: int) -> int:
  """a op b on integers; raises ExpressionError for division by zero or an inexact division."""
  if op == "+":
    return a + b
  if op == "-":
    return a - b
  if op == "*":
    return a * b
  if b == 0 or a % b != 0:
    raise ExpressionError(f"{a}/{b} is not an exact integer division")
  return a // b


def _tokenize(text: str) -> list[str]:
  tokens, pos, text = [], 0, text.rstrip()
  while pos < len(text):
    match = _TOKEN.match(text, pos)
    if match is None:
      raise ExpressionError(f"unexpected character {text[pos]!r} at {pos}")
    tokens.append(match.group(1))
    pos = match.end()
  return tokens


class _Parser:
  """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ; factor := NUMBER | '(' expr ')'."""

  def __init__(self, tokens: list[str]):
    self.tokens, self.pos, self.numbers = tokens, 0, []

  def _peek(self) -> str | None:
    return self.tokens[self.pos] if self.pos < len(self.tokens) else None

  def _take(self) -> str:
    token = self._peek()
    if token is None:
      raise ExpressionError("expression ends too early")
    self.pos += 1
    return token

  def parse(self) -> int:
    value = self._expr()
    if self._peek() is not None:
      raise ExpressionError(f"unexpected {self._peek()!r} after the expression")
    return value

  def _expr(self) -> int:
    value = self._term()
    while self._peek() in ("+", "-"):
      value = apply_op(value, self._take(), self._term())
    return value

  def _term(self) -> int:
    value = self._factor()
    while self._peek() in ("*", "/"):
      value = apply_op(value, self._take(), self._factor())
    return value

  def _factor(self) -> int:
    token = self._take()
    if token == "(":
      value = self._expr()
      if self._take() != ")":
        raise ExpressionError("missing ')'")
      return value
    if token.isdigit():
      self.numbers.append(int(token))
      return int(token)
    raise ExpressionError(f"expected a number or '(', got {token!r}")


def evaluate(text: str) -> tuple[int, list[int]]:
  """(value, the number literals used) of an integer expression; raises ExpressionError on bad text."""
  if len(text) > MAX_ANSWER_CHARS:
    raise ExpressionError(f"expression longer than {MAX_ANSWER_CHARS} characters")
  parser = _Parser(_tokenize(text))
  return parser.parse(), parser.numbers


def _legal_ops(a: int, b: int) -> list[tuple[int, str, int, int]]:
  """(left, op, right, result) for the useful operations on a pair, larger operand first for - and /."""
  hi, lo = max(a, b), min(a, b)
  ops = [(a, "+", b, a + b)]
  if hi > lo:
    ops.append((hi, "-", lo, hi - lo))
  if lo > 1:
    ops.append((a, "*", b, a * b))
    if hi % lo == 0:
      ops.append((hi, "/", lo, hi // lo))
  return [op for op in ops if 0 < op[3] <= MAX_VALUE]


class CountdownTask:
  name = "countdown"

  def generate(self, rng: np.random.Generator, difficulty: int) -> Example:
    if difficulty < 2:
      raise TaskError(f"countdown difficulty is the number of source numbers; it must be >= 2, got {difficulty}")
    for _ in range(1000):
      sources = [int(rng.choice(LARGE_NUMBERS)) if rng.random() < 0.25 else int(rng.choice(SMALL_NUMBERS))
                 for _ in range(difficulty)]
      pool = [(n, str(n)) for n in sources]  # (value, expression that makes it)
      steps = []
      while len(pool) > 1:
        i, j = (int(k) for k in rng.choice(len(pool), size=2, replace=False))
        (a, expr_a), (b, expr_b) = pool[i], pool[j]
        ops = _legal_ops(a, b)
        if not ops:
          break
        left, op, right, result = ops[int(rng.integers(len(ops)))]
        left_expr, right_expr = (expr_a, expr_b) if left == a else (expr_b, expr_a)
        steps.append(f"{left}{op}{right}={result}")
        pool = [p for k, p in enumerate(pool) if k not in (i, j)]
        pool.append((result, f"{_wrap(left_expr)}{op}{_wrap(right_expr)}"))
      if len(pool) == 1 and pool[0][0] not in sources:
        target, answer = pool[0]
        question = ",".join(map(str, sources)) + f"->{target}"
        return Example(question=question, rationale="\n".join(steps), answer=answer, difficulty=difficulty,
                       task=self.name, meta=(tuple(sources), target))
    raise TaskError(f"countdown could not build an instance with {difficulty} sources in 1000 tries")

  def verify(self, answer_text: str, example: Example) -> bool:
    """Any expression equal to the target that uses each source at most once (exact divisions only)."""
    try:
      sources, target = example.meta
      value, numbers = evaluate(answer_text.strip())
      return value == target and not collections.Counter(numbers) - collections.Counter(sources)
    except Exception:  # junk of any type is a wrong answer, never a crash
      return False

  def check_steps(self, rationale: str, example: Example) -> list[bool]:
    """A step is right iff its arithmetic is right and both operands are still available (each source and
    each earlier result can be used once). Available operands are used up even by a wrong step; only a
    right step adds its result."""
    return [right for right, _ in _replay(rationale, example)]

  def check_chain(self, rationale: str, example: Example) -> bool:
    """At least one step, every step right, and the last step's result is the target."""
    replay = _replay(rationale, example)
    return bool(replay) and all(right for right, _ in replay) and _reaches_target(replay, example)

  def step_score(self, rationale: str, example: Example) -> float:
    """Right steps / steps written when the last step rightly reaches the target; otherwise the chain is at
    least one step short: right / max(steps written, right steps + 1), so stopping early never pays."""
    replay = _replay(rationale, example)
    right = sum(ok for ok, _ in replay)
    needed = len(replay) if _reaches_target(replay, example) else max(len(replay), right + 1)
    return right / needed

  def vote_key(self, answer_text: str, example: Example) -> str:
    """"<value> from <sorted numbers>" for an expression ("(25*4)+3" and "3+25*4" are one vote), else the text."""
    try:
      value, numbers = evaluate(answer_text.strip())
    except Exception:  # not an expression: it votes as its text
      return text_key(answer_text)
    return f"{value} from {' '.join(map(str, sorted(numbers)))}"


def _replay(rationale: str, example: Example) -> list[tuple[bool, int | None]]:
  """(step right, the result it writes or None) per step written, following the available numbers."""
  try:
    sources, _ = example.meta
    available = collections.Counter(sources)
  except Exception:
    available = None
  replay = []
  for step in rationale_steps(rationale):
    match = _STEP.fullmatch(step)
    if match is None or available is None:
      replay.append((False, None))
      continue
    a, op, b, written = int(match.group(1)), match.group(2), int(match.group(3)), int(match.group(4))
    needed = collections.Counter([a, b])
    operands_ok = not needed - available
    if operands_ok:
      available -= needed
    try:
      arithmetic_ok = apply_op(a, op, b) == written
    except ExpressionError:
      arithmetic_ok = False
    if operands_ok and arithmetic_ok:
      available[written] += 1
    replay.append((operands_ok and arithmetic_ok, written))
  return replay


def _reaches_target(replay: list[tuple[bool, int | None]], example: Example) -> bool:
  """The last step is right and its result is the example's target."""
  try:
    return bool(replay) and replay[-1][0] and replay[-1][1] == example.meta[1]
  except Exception:
    return False


def _wrap(expr: str) -> str:
  return expr if expr.isdigit() else f"({expr})"
