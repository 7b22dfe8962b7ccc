"""Answer extraction and the math-equivalence verifier: cases worked out by hand, wrong answers included."""

import time

import pytest

from rr.data.answers import (VERIFIERS, choice_letter, extract_answer, gsm8k_final, last_boxed, math_equal,
                             normalize)
from rr.tasks import TASKS


@pytest.mark.parametrize("text, final", [
    ("48/2 = 24\n#### 72", "72"),
    ("a #### 1 then #### 1,234", "1234"),
    ("#### 1,234,567 ", "1234567"),
    ("#### -3.5", "-3.5"),
    ("#### 12,34", "12,34"),  # not a thousands grouping: left alone
    ("no marker 72", None),
    (None, None),
])
def test_gsm8k_final(text, final):
  assert gsm8k_final(text) == final


@pytest.mark.parametrize("text, content", [
    (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{1} then \fbox{ 3 }", "3"),
    (r"\boxed{\left\{ 1, 2 \right\}}", r"\left\{ 1, 2 \right\}"),  # escaped braces do not close the box
    (r"the answer is \boxed 5$ done", "5"),
    ("no box here", None),
    (r"\boxed{1} and a cut-off \boxed{\frac{1}{2", None),  # the last box is never closed
    (None, None),
])
def test_last_boxed(text, content):
  assert last_boxed(text) == content


@pytest.mark.parametrize("pred, ref", [
    ("72", "72"), ("0.50", "1/2"), ("0.5", r"\frac{1}{2}"), (r"\dfrac12", "0.5"), (r"\tfrac{1}{2}", "2/4"),
    ("-3", "-3.0"), (r"-\frac{3}{4}", "-0.75"), (r"\frac{-3}{4}", "-0.75"), ("1,234", "1234"), ("5.0", "5"),
    ("$5$", "5"), (r"\(5\)", "5"), (r"\boxed{7}", "7"), (r"\$18", "18"), ("x = 3", "3"), (r"y=\frac{1}{2}", ".5"),
    (r"10^\circ", "10"), (r"10^{\circ}", "10"), (r"50\%", "50"), ("50%", "50"), (r"5 \text{ cm}", "5"),
    (r"\text{Monday}", "Monday"), (r"5\!0", "50"), (r"1\,000", "1000"),
    (r"\frac{\sqrt{3}}{2}", r"\dfrac{\sqrt3}{2}"), (r"\left( 1, 2 \right)", "(1,2)"),
    (r"(0.5, 3)", r"(\frac12, 3.0)"), ("[1, 2)", "[1,2)"), ("2 \\pi", "2\\pi"), ("1e3", "1000"),
])
def test_math_equal_accepts_the_same_answer_written_differently(pred, ref):
  assert math_equal(pred, ref) and math_equal(ref, pred)


@pytest.mark.parametrize("pred, ref", [
    ("1/3", "0.33"), ("1/3", "0.3333"), ("0.33333", "1/3"), ("12", "1.2"), ("2", "-2"), ("72", "27"),
    ("(1,2)", "(2,1)"), ("[1,2]", "(1,2)"), ("(1,2)", "(1,2,3)"), ("abc", "abd"), ("", ""), ("  ", "0"),
    (None, "1"), ("1", None), (r"\frac{1}{2", "1/2"), (r"\frac{1}{0}", "0"), ("1/0", "1/0.0"),
    ("x = 3", "y = 4"), (r"\sqrt{2}", "1.414"), ("1e999999999", "1"), ("9" * 5000, "9" * 4999),
])
def test_math_equal_rejects_different_answers_and_junk(pred, ref):
  assert not math_equal(pred, ref) and not math_equal(ref, pred)


@pytest.mark.parametrize("pred, ref, equal", [
    ("1/3", "0.3333333", True), ("0.3333333", "1/3", False),  # a long reference decimal asks for a tolerance
    ("3.14159265", "3.141593", True), ("3.1416", "3.14159265", False), ("3.14159265", "3.1416", False),
    ("1000001.000000", "1000000", False), ("1000001", "1000000", False),  # integers compare exactly
    ("1000000.000000", "1000000", True),
])
def test_only_the_reference_asks_for_a_tolerance(pred, ref, equal):
  assert math_equal(pred, ref) is equal


@pytest.mark.parametrize("pred, ref, equal", [
    ("1 2", "12", False), ("1\n2", "12", False), (r"5 \text{ or } 7", "57", False), ("0.5 .5", "0.5.5", False),
    ("(1, 2)", "(1,2)", True), (r"\frac 1 2", "1/2", True), ("1 ,234", "1234", True), (r"1\,000\,000", "1000000", True),
])
def test_whitespace_between_numbers_keeps_them_apart(pred, ref, equal):
  assert math_equal(pred, ref) is equal


def test_math_equal_never_raises_and_stays_fast_on_junk():
  junk = ["{{{", "}}}", "\\", "\\boxed{", "$$", "((]", "\\frac", "\\frac{}{}", "1/", "/", "--1", ".", ",", "=",
          "x=", "\x00", "1e", "\\text{", 3, 0.5, ["1"], object()]
  start = time.time()
  for a in junk:
    for b in junk:
      assert math_equal(a, b) in (True, False)
  assert time.time() - start < 5
  assert math_equal(3, "3") and math_equal(0.5, "1/2")  # numbers are read as their text


def test_normalize_is_the_compared_form():
  assert normalize(r"$x = \dfrac12$") == r"\frac{1}{2}"
  assert normalize(r"5 \text{ cm}") == "5"
  assert normalize(r"\text{(A)}") == "(A)"


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("B.", "B"), ("[C]", "C"), ("B) foo", "B"), ("D. 42 apples", "D"),
    ("The answer is B", "B"), ("the answer is (C).", "C"), ("Answer: D", "D"), ("correct option: A", "A"),
    ("**B**", "B"), ("I think B", "B"), ("so (C) it is", "C"),
    ("A or B", None), ("(A) and (B)", None), ("nothing here", None), ("E", None), ("", None), (None, None),
])
def test_choice_letter(text, letter):
  assert choice_letter(text, ("A", "B", "C", "D")) == letter


def test_choice_letter_uses_the_given_labels():
  assert choice_letter("E", "ABCDE") == "E"
  assert choice_letter("The answer is E", "ABCD") is None
  assert choice_letter("2", ("1", "2", "3")) == "2"


def test_extract_answer_per_format():
  assert extract_answer("gsm8k", "so 70+2\n#### 72") == "72"
  assert extract_answer("gsm8k", " 72 ") == "72"
  assert extract_answer("math", r"thus \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
  assert extract_answer("math", r" \frac{1}{2} ") == r"\frac{1}{2}"
  assert extract_answer("choice", "The answer is (B)") == "B"
  assert extract_answer("choice", "The answer is E", labels="ABCDE") == "E"
  assert extract_answer("rationale", " x ") == "x"
  assert extract_answer("math", None) is None
  with pytest.raises(ValueError, match="unknown format"):
    extract_answer("mmlu", "A")


def test_verifier_names_do_not_collide_with_generated_tasks():
  assert set(VERIFIERS) == {"gsm8k", "math", "choice"}
  assert not set(VERIFIERS) & set(TASKS)
