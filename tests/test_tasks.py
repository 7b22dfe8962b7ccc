"""Task families: teacher rationales pass their own checkers, checkers catch planted errors, splits stay apart."""

import fractions
import hashlib
import re

import numpy as np
import pytest

from rr.tasks import TASKS, Example, TaskError, get_task, make_split

DIFFICULTIES = {"addition": (1, 2, 3, 5, 8), "countdown": (2, 3, 4, 6), "strings": (1, 2, 3, 5)}
SEEDS = range(40)


def generated(name):
  task = get_task(name)
  for difficulty in DIFFICULTIES[name]:
    for seed in SEEDS:
      yield task, task.generate(np.random.default_rng(seed), difficulty)


# ---------------------------------------------------------------- independent references (written in the test)

def addition_reference(question):
  a_text, b_text = question.split("+")
  width = max(len(a_text), len(b_text))
  a_digits, b_digits = a_text.zfill(width)[::-1], b_text.zfill(width)[::-1]
  lines, carry = [], 0
  for x, y in zip(a_digits, b_digits):
    column = int(x) + int(y) + carry
    lines.append(f"{x}+{y}+{carry}={column:02d}")
    carry = 1 if column >= 10 else 0
  return lines, str(int(a_text) + int(b_text))


def replay_countdown(question, rationale):
  """Follows each line with a multiset of available numbers; returns the last result."""
  sources_text, target_text = question.split("->")
  available = [int(s) for s in sources_text.split(",")]
  result = None
  for line in rationale.split("\n"):
    a, op, b, r = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", line).groups()
    a, b, r = int(a), int(b), int(r)
    available.remove(a)
    available.remove(b)
    exact = {"+": fractions.Fraction(a + b), "-": fractions.Fraction(a - b), "*": fractions.Fraction(a * b),
             "/": fractions.Fraction(a, b)}[op]
    assert exact == r and exact.denominator == 1, line
    available.append(r)
    result = r
  return result, int(target_text), [int(s) for s in sources_text.split(",")]


STRING_FUNCTIONS = {
    "rev": lambda s: "".join(reversed(s)),
    "rot": lambda s: s[1:] + s[0],
    "up": lambda s: "".join(chr(ord(c) - 32) if "a" <= c <= "z" else c for c in s),
    "swp": lambda s: "".join(c.lower() if c.isupper() else c.upper() for c in s),
    "nov": lambda s: re.sub("[aeiouAEIOU]", "", s),
    "dup": lambda s: s * 2,
    "srt": lambda s: "".join(sorted(s, key=ord)),
}


def strings_reference(question):
  names = []
  while "(" in question:
    name, question = question.split("(", 1)
    assert question.endswith(")")
    question = question[:-1]
    names.append(name)
  value, lines = question, []
  for name in reversed(names):
    new = STRING_FUNCTIONS[name](value)
    lines.append(f"{name}({value})={new}")
    value = new
  return lines, value


# ---------------------------------------------------------------- teacher rationales are right

@pytest.mark.parametrize("name", sorted(TASKS))
def test_teacher_rationales_pass_own_checkers(name):
  for task, example in generated(name):
    steps = task.check_steps(example.rationale, example)
    assert steps and all(steps), example
    assert task.check_chain(example.rationale, example) and task.step_score(example.rationale, example) == 1.0
    assert task.vote_key(example.answer, example) == task.vote_key(f" {example.answer}\n", example)
    assert task.verify(example.answer, example), example
    assert task.verify(f"  {example.answer}\n", example)
    assert example.task == name and example.difficulty in DIFFICULTIES[name]
    hash(example)  # frozen and hashable, meta included


def test_addition_matches_independent_reference():
  for _, example in generated("addition"):
    lines, answer = addition_reference(example.question)
    assert example.rationale.split("\n") == lines
    assert example.answer == answer
    a, b = example.question.split("+")
    d = example.difficulty
    assert len(a) == len(b) == d and (d == 1 or (a[0] != "0" and b[0] != "0"))  # exactly d digits


def test_addition_difficulty_3_is_short():
  for _, example in generated("addition"):
    if example.difficulty == 3:
      assert len(example.question) + 1 + len(example.rationale) + len(example.answer) < 48


def test_countdown_matches_independent_replay():
  for _, example in generated("countdown"):
    result, target, sources = replay_countdown(example.question, example.rationale)
    assert result == target
    assert len(sources) == example.difficulty
    assert target not in sources
    assert len(example.rationale.split("\n")) == example.difficulty - 1
    assert re.fullmatch(r"[0-9+\-*/() ]+", example.answer)
    assert eval(example.answer) == target  # our own generated text, checked by the regex above


def test_strings_matches_independent_reference():
  for _, example in generated("strings"):
    lines, answer = strings_reference(example.question)
    assert example.rationale.split("\n") == lines
    assert example.answer == answer
    assert len(lines) == example.difficulty


# ---------------------------------------------------------------- planted errors and junk

def plant(line):
  """A wrong version of a step: change its last character."""
  last = line[-1]
  replacement = {"9": "8"}.get(last, "9") if last.isdigit() else ("x" if last != "x" else "y")
  return line[:-1] + replacement


@pytest.mark.parametrize("name", sorted(TASKS))
def test_planted_wrong_step_is_caught_at_its_index(name):
  task = get_task(name)
  checked = 0
  for _, example in generated(name):
    lines = example.rationale.split("\n")
    if len(lines) < 3:
      continue
    for k in range(len(lines)):
      bad = lines[:k] + [plant(lines[k])] + lines[k + 1:]
      result = task.check_steps("\n".join(bad), example)
      assert len(result) == len(lines)
      assert all(result[:k]) and result[k] is False, (example, k, result)
      if name != "countdown":  # countdown steps build on earlier results, so later ones may fail too
        assert all(result[k + 1:]), (example, k, result)
      checked += 1
  assert checked > 50


def test_consistent_but_wrong_steps_are_caught():
  """Steps whose own arithmetic is fine but that do not belong at their place: wrong carry, wrong column."""
  task = get_task("addition")
  for _, example in generated("addition"):
    lines = example.rationale.split("\n")
    for k, line in enumerate(lines):
      a, b, c, _ = (int(x) for x in re.fullmatch(r"(\d)\+(\d)\+(\d)=(\d\d)", line).groups())
      wrong_carry = f"{a}+{b}+{1 - c}={a + b + 1 - c:02d}"
      result = task.check_steps("\n".join(lines[:k] + [wrong_carry] + lines[k + 1:]), example)
      assert result == [i != k for i in range(len(lines))], (example, k)
    if len(lines) >= 2 and lines[0] != lines[1]:
      assert task.check_steps("\n".join([lines[1], lines[0]] + lines[2:]), example)[:2] == [False, False]
    assert task.check_steps(example.rationale + "\n0+0+0=00", example) == [True] * len(lines) + [False]
  strings = get_task("strings")
  example = Example("rev(up(abc))", "", "CBA", 2, "strings", ("abc", ("up", "rev")))
  assert strings.check_steps("up(abc)=ABC\nrev(ABC)=CBA", example) == [True, True]
  assert strings.check_steps("up(abd)=ABD\nrev(ABC)=CBA", example) == [False, True]  # wrong argument
  assert strings.check_steps("rev(abc)=cba\nup(cba)=CBA", example) == [False, False]  # wrong order
  assert strings.verify("CBA", example) and not strings.verify("cba", example)


def test_countdown_wrong_last_step_only_flags_it_and_reuse_is_caught():
  task = get_task("countdown")
  example = Example("25,4,3->103", "25*4=100\n100+3=103", "(25*4)+3", 3, "countdown", ((25, 4, 3), 103))
  assert task.check_steps(example.rationale, example) == [True, True]
  assert task.check_steps("25*4=100\n100+3=104", example) == [True, False]
  assert task.check_steps("25*4=100\n100+4=104", example) == [True, False]  # 4 already used
  assert task.check_steps("25*4=100\n25+3=28", example) == [True, False]  # 25 already used
  assert task.check_steps("7*3=21", example) == [False]  # 7 is not available
  assert task.check_steps("4*3=12\n25+12=37\n37*3=111", example) == [True, True, False]
  assert task.check_steps("8/3=2", Example("8,3->2", "", "", 2, "countdown", ((8, 3), 2))) == [False]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_verifier_rejects_wrong_answers_and_junk(name):
  task = get_task(name)
  for _, example in generated(name):
    assert not task.verify(example.answer + "1", example)
    for junk in ("", "  ", "\x00", "</think>", "((((", "1/0", "9" * 300, None, 12, b"abc", ["x"]):
      assert task.verify(junk, example) is False
    for junk in ("", "garbage", "\n\n", "=" * 50, None, 7):
      result = task.check_steps(junk, example)
      assert isinstance(result, list) and not any(result)
      assert task.check_chain(junk, example) is False and task.step_score(junk, example) == 0.0
    for junk in ("", "\x00", "((((", "9" * 300, None, 12, b"abc"):
      assert isinstance(task.vote_key(junk, example), str)
    assert task.check_chain(example.rationale, Example("q", "", "", 1, name, ("bad",))) is False


def test_addition_verifier_rejects_off_by_one_and_signs():
  task = get_task("addition")
  example = task.generate(np.random.default_rng(3), 3)
  a, b = (int(x) for x in example.question.split("+"))
  assert task.verify(str(a + b), example)
  for wrong in (str(a + b + 1), str(a + b - 1), f"-{a + b}", f"{a + b}.0", f"{a}+{b}"):
    assert not task.verify(wrong, example)


def test_countdown_verifier_accepts_alternatives_and_rejects_reuse():
  task = get_task("countdown")
  example = Example("25,4,3->103", "25*4=100\n100+3=103", "(25*4)+3", 3, "countdown", ((25, 4, 3), 103))
  for good in ("(25*4)+3", "3+4*25", "3 + (25 * 4)", "4*25+3", "((4)*(25))+(3)"):
    assert task.verify(good, example), good
  for bad in ("25*4+3+3-3",  # 3 used three times
              "(3+4)*25",  # precedence: 175
              "25*4+3*1",  # 1 is not a source
              "100+3",  # 100 is not a source
              "25*4+", "25*4+3)", "__import__('os')", "25*4+3=103", "-3+25*4+6"):
    assert not task.verify(bad, example), bad
  twice = Example("5,5,2->27", "", "", 3, "countdown", ((5, 5, 2), 27))
  assert task.verify("5*5+2", twice)
  assert not task.verify("5*5+2*1", twice)
  assert not task.verify("5*5*5/5+2", twice)
  exact = Example("7,2,3->9", "", "", 3, "countdown", ((7, 2, 3), 9))
  assert not task.verify("7/2*2+3-1", exact)  # 7/2 is not exact (and 2 reused)
  assert task.verify("(7+2)", exact)


# ---------------------------------------------------------------- splits

def md5_is_test(question):
  return int(hashlib.md5(question.encode()).hexdigest()[:16], 16) / 2**64 < 0.1


@pytest.mark.parametrize("name,difficulty", [("addition", 3), ("countdown", 3), ("strings", 2)])
def test_train_and_test_never_share_a_question(name, difficulty):
  train = make_split(name, "train", 400, difficulty, seed=0)
  test = make_split(name, "test", 60, difficulty, seed=1)
  test_same_seed = make_split(name, "test", 60, difficulty, seed=0)
  train_questions = {e.question for e in train}
  test_questions = {e.question for e in test} | {e.question for e in test_same_seed}
  assert len(train_questions) == 400 and len({e.question for e in test}) == 60
  assert not train_questions & test_questions
  assert all(md5_is_test(q) for q in test_questions) and not any(md5_is_test(q) for q in train_questions)
  assert make_split(name, "train", 400, difficulty, seed=0) == train  # deterministic
  assert make_split(name, "train", 100, difficulty, seed=0) == train[:100]  # smaller size = prefix
  assert all(e.difficulty == difficulty and e.task == name for e in train)


def test_make_split_exhausts_a_small_space_then_raises():
  everything = [f"{a}+{b}" for a in range(10) for b in range(10)]
  test_questions = {q for q in everything if md5_is_test(q)}
  assert 0 < len(test_questions) < 30
  split = make_split("addition", "test", len(test_questions), 1, seed=0)
  assert {e.question for e in split} == test_questions
  with pytest.raises(TaskError, match="only"):
    make_split("addition", "test", len(test_questions) + 1, 1, seed=0)
  with pytest.raises(TaskError, match="train_size"):
    make_split("addition", "train", 1000, 1, seed=0)


def test_bad_names_and_difficulties_are_clear_errors():
  with pytest.raises(TaskError, match="addition"):
    get_task("additon")
  with pytest.raises(TaskError):
    make_split("addition", "valid", 3, 2, seed=0)
  with pytest.raises(TaskError, match="digits"):
    get_task("addition").generate(np.random.default_rng(0), 0)
  with pytest.raises(TaskError, match="source"):
    get_task("countdown").generate(np.random.default_rng(0), 1)
