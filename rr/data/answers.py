"""Reading answers out of benchmark text, and deciding when two math answers mean the same. Pure Python.

Benchmarks write the same answer many ways ("0.50", "1/2", "\\dfrac12", "$\\frac{1}{2}$"), and a student that
was taught one of them should not be marked wrong for another. `math_equal` compares exactly, as fractions,
whenever both sides read as numbers, and otherwise compares normalised LaTeX strings; it never raises. Only
the reference can ask for a tolerance, and whitespace between two numbers keeps them two ("1 2" is not 12),
so a policy cannot make a wrong answer right by how it writes it. Digits are ASCII (re's \\d alone would
also read e.g. Arabic-Indic digits, which no reference here writes).

The verifiers at the bottom (`VERIFIERS`) are what rr.rewards and rr.eval use for data tasks "gsm8k", "math"
and "choice" (rr.data.benchmarks makes those examples).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable, Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_LABELS = ("A", "B", "C", "D")
LONG_DECIMAL = 6  # a reference decimal with this many digits after the point is compared with a tolerance ...
REL_TOL = Fraction(1, 10**6)  # ... of this much relative to the larger side (or half its last digit)

# ------------------------------------------------------------------------------------------ extraction

_THOUSANDS = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def gsm8k_final(text) -> str | None:
  """The text after the last "####", stripped, thousands commas removed ("1,234" -> "1234"); None without one."""
  if not isinstance(text, str) or "####" not in text:
    return None
  return _THOUSANDS.sub("", text.rpartition("####")[2].strip())


def _braced(text: str, start: int) -> int | None:
  """Index of the "}" closing the "{" at text[start], skipping escaped braces; None if never closed."""
  depth, i = 0, start
  while i < len(text):
    char = text[i]
    if char == "\\":
      i += 2
      continue
    if char == "{":
      depth += 1
    elif char == "}":
      depth -= 1
      if depth == 0:
        return i
    i += 1
  return None


def last_boxed(text) -> str | None:
  """Content of the last \\boxed{...} or \\fbox{...} (braces balanced, so \\boxed{\\frac{1}{2}} works), also
  "\\boxed 5"; None if there is none or the last one is never closed."""
  if not isinstance(text, str):
    return None
  matches = list(_BOX.finditer(text))
  if not matches:
    return None
  rest = matches[-1].end()
  brace = len(text) - len(text[rest:].lstrip())
  if text[brace:brace + 1] == "{":
    end = _braced(text, brace)
    return None if end is None else text[brace + 1:end].strip()
  token = re.match(r"\s+([^\s$]+)", text[rest:])
  return token.group(1) if token else None


def _label_pattern(labels: Sequence[str]) -> str:
  return "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))


def choice_letter(text, labels: Sequence[str] = DEFAULT_LABELS) -> str | None:
  """The label a free-text answer chooses: "B", "(B)", "B.", "B) foo", "The answer is B" -> "B".

  Tried in order, the first that decides wins: the whole text is a label (any case, maybe in brackets,
  maybe with "." or ":"); the text starts with a label and ")", "." or ":" (and brackets no other label);
  the last "answer is X" / "answer: X" / "option X"; the one distinct bracketed label; the one distinct
  standalone label. None when nothing decides or two different labels tie (ambiguous)."""
  if not isinstance(text, str) or not labels:
    return None
  labels = [str(label) for label in labels]
  alt = _label_pattern(labels)
  t = text.replace("*", "").strip()  # markdown bold around the letter
  whole = re.fullmatch(r"[(\[]?\s*(\w+)\s*[)\]]?\s*[.:]?", t)
  if whole:
    by_case = {label.upper(): label for label in labels}
    if whole.group(1).upper() in by_case:
      return by_case[whole.group(1).upper()]
  bracketed = set(re.findall(rf"[(\[]({alt})[)\]]", t))
  lead = re.match(rf"[(\[]?({alt})[)\].:](?:\s|$)", t)
  if lead and bracketed <= {lead.group(1)}:
    return lead.group(1)
  said = re.findall(rf"(?i:answer|option|choice)(?:\s+(?i:is))?\s*[:\-]?\s*(?:(?i:option|choice)\s*)?"
                    rf"[(\[]?({alt})(?![A-Za-z0-9])", t)
  if said:
    return said[-1]
  for found in (bracketed, set(re.findall(rf"(?<![A-Za-z0-9])({alt})(?![A-Za-z0-9])", t))):
    if len(found) == 1:
      return found.pop()
    if found:
      return None
  return None


def extract_answer(format: str, text, labels: Sequence[str] = DEFAULT_LABELS) -> str | None:
  """What a student's answer text means under a data format: gsm8k -> after "####" if present, else the
  text; math -> the last \\boxed{} if present, else the text; choice -> choice_letter (None if no label);
  rationale -> the text."""
  if not isinstance(text, str):
    return None
  if format == "gsm8k":
    final = gsm8k_final(text)
    return text.strip() if final is None else final
  if format == "math":
    boxed = last_boxed(text)
    return text.strip() if boxed is None else boxed
  if format == "choice":
    return choice_letter(text, labels)
  if format == "rationale":
    return text.strip()
  raise ValueError(f"extract_answer: unknown format {format!r}; choose gsm8k, math, choice or rationale")


# ------------------------------------------------------------------------------------------ equivalence

_WRAPPERS = ((r"\(", r"\)"), (r"\[", r"\]"), ("$$", "$$"), ("$", "$"))
_JOIN = re.compile(r"\\[!,]")  # thin and negative spaces join digit groups: 1\\,000 is 1000
_DROP = re.compile(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\displaystyle|\\[;: ]|\\q?quad(?![A-Za-z])|~"
                   r"|\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\%|%|\\\$")
_TEXT = re.compile(r"\\(?:text|textbf|textrm|mbox|mathrm)\s*\{([^{}]*)\}")
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=\S)")
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_SPACE = re.compile(r"\s+")
_NUMBER_CHARS = frozenset("0123456789.")


def _unwrap(s: str) -> str:
  s = s.strip()
  changed = True
  while changed:
    changed = False
    boxed = re.match(r"\\(?:boxed|fbox)\s*\{", s)
    if boxed and _braced(s, boxed.end() - 1) == len(s) - 1:
      s, changed = s[boxed.end():-1].strip(), True
    for left, right in _WRAPPERS:
      if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
        s, changed = s[len(left):len(s) - len(right)].strip(), True
        break
  return s


def _brace_short_args(s: str) -> str:
  """\\frac12 -> \\frac{1}{2}, \\frac1{x} -> \\frac{1}{x}, \\sqrt3 -> \\sqrt{3}: single-token arguments get braces."""
  out, i = [], 0
  while i < len(s):
    m = re.match(r"\\(frac|sqrt)(?![A-Za-z])", s[i:])
    if not m:
      out.append(s[i])
      i += 1
      continue
    out.append(m.group(0))
    i += m.end()
    for _ in range(2 if m.group(1) == "frac" else 1):
      while i < len(s) and s[i] == " ":  # \\frac 1 2: a space kept between two digits
        i += 1
      if i < len(s) and s[i] == "{":
        end = _braced(s, i)
        if end is None:
          break
        out.append("{" + _brace_short_args(s[i + 1:end]) + "}")
        i = end + 1
      elif i < len(s) and s[i] not in "\\[":
        out.append("{" + s[i] + "}")
        i += 1
      else:
        break
  return "".join(out)


def _squeeze(s: str) -> str:
  """Whitespace dropped, except one space where it separates two numbers ("1 2", "0.5 .5"), which stay two."""
  def keep(m):
    inside = 0 < m.start() and m.end() < len(s)
    return " " if inside and s[m.start() - 1] in _NUMBER_CHARS and s[m.end()] in _NUMBER_CHARS else ""
  return _SPACE.sub(keep, s)


def _clean(s: str) -> str:
  s = _squeeze(s)
  s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
  s = _brace_short_args(s)
  s = s.replace("\u2212", "-")  # unicode minus
  if s.endswith(".") and not re.fullmatch(_NUMBER, s):
    s = s[:-1]
  if _GROUPED.fullmatch(s):
    s = s.replace(",", "")
  s = re.sub(r"^\{(" + _NUMBER + r")\}$", r"\1", s)
  return s


def normalize(text: str) -> str:
  """The canonical string `math_equal` compares: wrappers ($, \\(, \\boxed{}) and spacing, \\left/\\right, degree
  and percent signs and a leading "x =" gone, \\dfrac/\\tfrac as \\frac with braced arguments, thousands commas
  dropped; \\text{...} dropped when what is left is a number (a unit), else replaced by its content."""
  s = _unwrap(str(text))
  s = _ASSIGN.sub("", s) if s.count("=") == 1 else s
  s = _unwrap(_DROP.sub(" ", _JOIN.sub("", s)))
  without_text = _clean(_TEXT.sub(" ", s))
  if without_text and _number(without_text) is not None:
    return without_text
  return _clean(_TEXT.sub(lambda m: m.group(1), s))


def _decimals(literal: str) -> int:
  return len(literal.partition(".")[2]) if "." in literal else 0


def _number(s: str) -> tuple[Fraction, int] | None:
  """(exact value, digits after the decimal point) when `s` is an integer, decimal, a/b or \\frac{a}{b}."""
  if re.fullmatch(_NUMBER + r"(?:[eE][+-]?[0-9]{1,3})?", s):  # a bounded exponent: 1e999999999 is not built
    return Fraction(s), _decimals(s.lower().partition("e")[0])
  m = (re.fullmatch(rf"([+-]?)\\frac\{{({_NUMBER})\}}\{{({_NUMBER})\}}", s) or
       re.fullmatch(rf"()({_NUMBER})/({_NUMBER})", s))
  if m:
    num, den = Fraction(m.group(2)), Fraction(m.group(3))
    if den == 0:
      return None
    return (-1 if m.group(1) == "-" else 1) * num / den, max(_decimals(m.group(2)), _decimals(m.group(3)))
  return None


def _split_top_level(s: str) -> list[str]:
  parts, depth, start = [], 0, 0
  for i, char in enumerate(s):
    if char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      parts.append(s[start:i])
      start = i + 1
  parts.append(s[start:])
  return parts


def _same(a: str, b: str) -> bool:
  if not a or not b:
    return False
  if a == b:
    return True
  x, y = _number(a), _number(b)
  if x is not None and y is not None:
    (u, du), (v, dv) = x, y
    if u == v:
      return True
    if dv < LONG_DECIMAL:  # only the reference (b) may ask for a tolerance; integers compare exactly
      return False
    return abs(u - v) <= max(REL_TOL * max(abs(u), abs(v)), Fraction(1, 2 * 10**dv))
  if len(a) > 2 and len(b) > 2 and a[0] in "([" and a[-1] in ")]" and (a[0], a[-1]) == (b[0], b[-1]):
    xs, ys = _split_top_level(a[1:-1]), _split_top_level(b[1:-1])
    return len(xs) == len(ys) and (len(xs) > 1) and all(_same(normalize(p), normalize(q)) for p, q in zip(xs, ys))
  return False


def math_equal(pred, ref) -> bool:
  """True when `pred` and `ref` are the same answer: equal as numbers (exact fractions; a reference decimal
  with 6 or more places asks for a 1e-6 relative tolerance, a prediction never does) or as normalised LaTeX
  (see `normalize`); tuples and intervals element-wise. Not symmetric: "1/3" matches a reference 0.333333,
  "0.333333" does not match a reference 1/3. False for None, empty or junk input; never raises."""
  if pred is None or ref is None:
    return False
  try:
    return _same(normalize(pred), normalize(ref))
  except Exception:  # junk input (e.g. a huge exponent) is a wrong answer, never a crash
    return False


# ------------------------------------------------------------------------------------------ verifiers


def verify_gsm8k(answer_text: str, example) -> bool:
  return math_equal(extract_answer("gsm8k", answer_text), example.answer)


def verify_math(answer_text: str, example) -> bool:
  return math_equal(extract_answer("math", answer_text), example.answer)


def verify_choice(answer_text: str, example) -> bool:
  return choice_letter(answer_text, example.meta or DEFAULT_LABELS) == example.answer


def vote_key(answer_text: str, example) -> str | None:
  """The answer as a majority vote counts it, for data tasks: the chosen letter for choice data ("B", "(B)" and
  "The answer is B" are one vote); for gsm8k / math the normalised final answer, numbers as exact fractions
  ("0.5", "1/2" and "\\frac{1}{2}" are one vote). None when nothing can be read; never raises."""
  try:
    if example.task == "choice":
      return choice_letter(answer_text, example.meta or DEFAULT_LABELS)
    final = extract_answer(example.task, answer_text)
    key = normalize(final) if final is not None else ""
    number = _number(key)
    return str(number[0]) if number is not None else (key or None)
  except Exception:  # junk text is an unreadable answer, never a crash
    return None


# Data tasks: Example.task -> verifier(student answer text, example) -> bool. They have no step checker.
VERIFIERS: dict[str, Callable[[str, object], bool]] = {"gsm8k": verify_gsm8k, "math": verify_math,
                                                       "choice": verify_choice}
