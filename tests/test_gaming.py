"""Gaming tables: completions a policy could try against each verifier, chain check and built-in reward.

RL finds every way to collect a reward without solving the task, and every reported figure stands on these
functions, so each hole found once is pinned shut by a row here with the exact score it must get: truncated
chains, repeated steps, right answers with wrong steps and the reverse, padded numbers, split digits, several
answers at once, unclosed tags, empty answers, huge numbers, non-ASCII digits. Positive rows make sure the
fixes do not reject right answers written another way. Pure Python: no model, no JAX.
"""

import numpy as np
import pytest

from rr import rewards
from rr.eval.metrics import maj_at_k
from rr.eval.scoring import score
from rr.rewards.builtin import chain_checker, verifier
from rr.tasks import TASKS, Example, get_task, rationale_steps

ADD_STEPS = "5+3+0=08\n6+7+0=13\n8+6+1=15"
ADD = Example("865+673", ADD_STEPS, "1538", 3, "addition", (865, 673))
STR_STEPS = "up(abc)=ABC\nrev(ABC)=CBA"
STR = Example("rev(up(abc))", STR_STEPS, "CBA", 2, "strings", ("abc", ("up", "rev")))
CD_STEPS = "25*4=100\n100+3=103"
CD = Example("25,4,3->103", CD_STEPS, "(25*4)+3", 3, "countdown", ((25, 4, 3), 103))
CD_SPARE = Example("7,2,3->9", "7+2=9", "7+2", 3, "countdown", ((7, 2, 3), 9))  # 3 need not be used
G = Example("q", "", "72", 0, "gsm8k")
M = Example("q", "", r"\frac{1}{2}", 0, "math")
C = Example("q\nA. 1\nB. 2\nC. 3\nD. 4", "", "B", 0, "choice", ("A", "B", "C", "D"))
USER = Example("q", "", "Paris City")

ARABIC_1538 = "\u0661\u0665\u0663\u0668"  # Arabic-Indic digits: int() and re's \d read them as 1538
WIDE_1538 = "\uff11\uff15\uff13\uff18"  # full-width digits, likewise


def math_example(reference):
  return Example("q", "", reference, 0, "math")


def test_hand_built_examples_are_what_generate_makes():
  assert get_task("addition").generate(np.random.default_rng(0), 3) == ADD
  for task, example in ((get_task("strings"), STR), (get_task("countdown"), CD), (get_task("countdown"), CD_SPARE)):
    assert task.check_chain(example.rationale, example) and task.verify(example.answer, example)


# ------------------------------------------------------------------------------------------ answer verifiers

@pytest.mark.parametrize("answer, right", [
    ("1538", True), (" 1538\n", True),
    ("01538", True), ("0001538", True),  # padded: the value is right
    ("1539", False), ("1537", False), ("-1538", False), ("+1538", False), ("1538.0", False), ("1538.", False),
    ("15 38", False), ("1 538", False), ("1,538", False),  # split digits, grouping
    ("1538 1538", False), ("1538 1539", False), ("1538\n1539", False), ("1538,1539", False), ("1538/1539", False),
    (ARABIC_1538, False), (WIDE_1538, False),
    ("", False), ("   ", False),
    ("9" * 5000, False), ("1538" + "0" * 60, False), ("1538 is the answer", False),
])
def test_addition_verifier(answer, right):
  assert verifier("addition")(answer, ADD) is right


@pytest.mark.parametrize("answer, right", [
    ("CBA", True), (" CBA\n", True),
    ("cba", False), ("ABC", False), ("CBA.", False), ("CB A", False), ("C B A", False),
    ("CBA CBA", False), ("CBA\nCBA", False), ("CBA,ABC", False),
    ("\uff23\uff22\uff21", False), ("", False), ("C" * 5000, False),
])
def test_strings_verifier(answer, right):
  assert verifier("strings")(answer, STR) is right


@pytest.mark.parametrize("example, answer, right", [
    (CD, "(25*4)+3", True), (CD, "3+25*4", True), (CD, "3 + 4 * 25", True), (CD, "((25)*(4))+(3)", True),
    (CD, " 25*4+3\n", True), (CD, "25*04+3", True),  # a padded operand is still the source 4
    (CD_SPARE, "7+2", True),  # an answer need not use every source
    (CD, "100+3", False), (CD, "103", False), (CD, "25*4+3*1", False), (CD, "25*4+3-0", False),
    (CD, "25*4+3+3-3", False), (CD, "(3+4)*25", False), (CD, "25*4+3=103", False),
    (CD, "(25*4)+3 (25*4)+3", False), (CD, "(25*4)+3, 3+100", False), (CD, "(25*4)+3\n3+4*25", False),
    (CD, "\u0662\u0665*4+3", False), (CD, "", False), (CD, "9" * 300, False), (CD, "1" * 10 + "*0+103", False),
])
def test_countdown_verifier(example, answer, right):
  assert verifier("countdown")(answer, example) is right


@pytest.mark.parametrize("answer, right", [
    ("72", True), ("#### 72", True), ("so 70+2\n#### 72", True), ("$72$", True), ("#### 73 #### 72", True),
    ("72.0", True), ("72.000000", True), ("072", True),  # padded: the value is right
    ("7 2", False), ("72 73", False), ("72\n73", False), ("72, 73", False), ("72,73", False),
    ("#### 72 #### 73", False),  # only the last "####" counts
    ("72.000001", False), ("72.0000001", False),  # an integer reference compares exactly
    ("\u0667\u0662", False), ("\uff17\uff12", False), ("", False), ("9" * 5000, False), ("72 apples", False),
])
def test_gsm8k_verifier(answer, right):
  assert verifier("gsm8k")(answer, G) is right


@pytest.mark.parametrize("reference, answer, right", [
    (r"\frac{1}{2}", "0.5", True), (r"\frac{1}{2}", "1/2", True), (r"\frac{1}{2}", r"\frac{1}{2}", True),
    (r"\frac{1}{2}", r"\frac12", True), (r"\frac{1}{2}", r"\frac 1 2", True), (r"\frac{1}{2}", r"\dfrac{1}{2}", True),
    (r"\frac{1}{2}", r"$\boxed{\frac{1}{2}}$", True), (r"\frac{1}{2}", "x = 0.5", True), (r"\frac{1}{2}", "0.50", True),
    (r"\frac{1}{2}", "0.500000", True), (r"\frac{1}{2}", r"\boxed{1} then \boxed{\frac12}", True),  # last box
    ("3", "x = 3", True), ("1234", "1,234", True), ("5", r"$\boxed{5}$", True), ("1000", r"1\,000", True),
    ("0.333333", "1/3", True),  # the reference's 6 decimals ask for a tolerance
    (r"\frac{1}{2}", "0.5000001", False), (r"\frac{1}{2}", "0.499999", False), ("1/3", "0.333333", False),
    ("1000000", "1000001.000000", False), ("1000000", "1000000.5", False),  # the prediction asks for none
    ("12", "1 2", False), ("57", r"5 \text{ or } 7", False), ("5", "5 5", False), ("12", "1\n2", False),
    (r"\frac{1}{2}", "1/2 1/2", False), (r"\frac{1}{2}", r"\frac{1}{2}, \frac{1}{3}", False),
    ("734", "\u0667\u0663\u0664", False), (r"\frac{1}{2}", "", False), ("1", "9" * 5000, False),
])
def test_math_verifier(reference, answer, right):
  assert verifier("math")(answer, math_example(reference)) is right


@pytest.mark.parametrize("answer, right", [
    ("B", True), ("b", True), ("(B)", True), ("B.", True), ("The answer is B", True),
    ("The answer is A. The answer is B", True),  # only the last statement is read
    ("A or B", False), ("A B C D", False), ("(A) (B)", False), ("ABCD", False),
    ("The answer is B. The answer is A", False),
    ("\uff22", False), ("", False), ("E", False), ("A", False),
])
def test_choice_verifier(answer, right):
  assert verifier("choice")(answer, C) is right


@pytest.mark.parametrize("answer, right", [
    ("Paris City", True), (" Paris  City\n", True),
    ("paris city", False), ("ParisCity", False), ("Paris", False), ("Paris City Paris City", False), ("", False),
])
def test_user_data_exact_match(answer, right):
  assert verifier("")(answer, USER) is right


# ------------------------------------------------------------------------------------------ chains and steps

@pytest.mark.parametrize("example, rationale, whole, share", [
    (ADD, ADD_STEPS, True, 1.0),
    (ADD, "5+3+0=8\n6+7+0=13\n8+6+1=15", True, 1.0),  # an unpadded column sum has the right value
    (ADD, "5+3+0=08\n\n6+7+0=13\n  8+6+1=15  ", True, 1.0),  # blank lines are not steps
    (ADD, "5+3+0=08", False, 1 / 3),  # truncated: one column of three
    (ADD, "5+3+0=08\n6+7+0=13", False, 2 / 3),
    (ADD, "", False, 0.0),
    (ADD, ADD_STEPS + "\n0+0+0=00", False, 3 / 4),  # an extra step
    (ADD, ADD_STEPS + "\n8+6+1=15", False, 3 / 4),  # the last step repeated
    (ADD, "5+3+0=08\n5+3+0=08\n5+3+0=08", False, 1 / 3),  # one step three times
    (ADD, ADD_STEPS + "\n" + ADD_STEPS, False, 1 / 2),
    (ADD, "6+7+0=13\n5+3+0=08\n8+6+1=15", False, 1 / 3),  # columns out of order
    (ADD, "5+3+0=08\n6+7+0=13\n8+6+0=14", False, 2 / 3),  # a dropped carry
    (ADD, "\u0665+\u0663+\u0660=\u0660\u0668\n6+7+0=13\n8+6+1=15", False, 2 / 3),  # non-ASCII digits
    (ADD, "5+3+0=08 6+7+0=13 8+6+1=15", False, 0.0),  # three steps on one line
    (ADD, "5+3=8\n6+7=13\n8+6+1=15", False, 1 / 3),  # another layout
    (STR, STR_STEPS, True, 1.0),
    (STR, "up(abc)=ABC", False, 1 / 2),  # truncated
    (STR, "", False, 0.0),
    (STR, "rev(ABC)=CBA", False, 0.0),  # the last step alone, at the first step's place
    (STR, "rev(abc)=cba\nup(cba)=CBA", False, 0.0),  # functions applied outermost first
    (STR, "up(abc)=ABC\nup(abc)=ABC", False, 1 / 2),  # repeated
    (STR, STR_STEPS + "\nrev(ABC)=CBA", False, 2 / 3),
    (STR, STR_STEPS + "\nrot(CBA)=BAC", False, 2 / 3),  # an extra function
    (STR, "up(abc)=ABC\nrev(ABC)=cba", False, 1 / 2),
    (CD, CD_STEPS, True, 1.0),
    (CD, "4*25=100\n3+100=103", True, 1.0),  # operands in either order
    (CD, CD_STEPS + "\n", True, 1.0),
    (CD_SPARE, "7+2=9", True, 1.0),  # a chain need not use every source, as an answer need not
    (CD, "25*4=100", False, 1 / 2),  # truncated: at least one step short of the target
    (CD, "", False, 0.0),
    (CD, "25*4=100\n100+3=104", False, 1 / 2),  # a wrong last step
    (CD, CD_STEPS + "\n100+3=103", False, 2 / 3),  # repeated: 100 and 3 are used up
    (CD, "25*4=100\n25*4=100\n100+3=103", False, 2 / 3),  # a repeated step in the middle
    (CD, "100+3=103", False, 0.0),  # 100 is no source
    (CD, "25+3=28\n28*4=112", False, 2 / 3),  # right steps that miss the target
    (CD_SPARE, "7+2=9\n9*3=27", False, 2 / 3),  # ran past the target
    (CD, "\u0662\u0665*4=100\n100+3=103", False, 0.0),  # non-ASCII digits: 100 never made, so never available
    (CD, "25*4=100 100+3=103", False, 0.0),
])
def test_chain_check_and_step_score(example, rationale, whole, share):
  task = get_task(example.task)
  assert task.check_chain(rationale, example) is whole
  assert chain_checker(example.task)(rationale, example) is whole
  assert task.step_score(rationale, example) == pytest.approx(share)


def variants(rationale):
  """Rationales a policy could write around a right one: prefixes, repeats, drops, swaps, an extra line."""
  steps = rationale_steps(rationale)
  out = ["\n".join(steps[:k]) for k in range(len(steps) + 1)]
  out += ["\n".join(steps + steps[-1:]), "\n".join(steps + ["0+0+0=00"]), "\n".join(steps[1:])]
  if len(steps) > 1:
    out.append("\n".join([steps[1], steps[0]] + steps[2:]))
  return out


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_full_step_score_is_exactly_a_whole_chain(name):
  """step_correctness pays 1.0 for a whole right chain and for nothing else, so it cannot be reached short."""
  task = get_task(name)
  for difficulty in {"addition": (1, 3, 6), "countdown": (2, 3, 5), "strings": (1, 3, 4)}[name]:
    for seed in range(15):
      example = task.generate(np.random.default_rng(seed), difficulty)
      assert task.check_chain(example.rationale, example) and task.step_score(example.rationale, example) == 1.0
      for rationale in variants(example.rationale):
        share = task.step_score(rationale, example)
        assert 0.0 <= share <= 1.0
        assert (share == 1.0) is task.check_chain(rationale, example), (example, rationale)


# ------------------------------------------------------------------------------------------ built-in rewards

@pytest.mark.parametrize("example, completion, reward", [
    (ADD, f"<think>{ADD_STEPS}</think>1538", 1.0),
    (ADD, "<think>5+3+0=08</think>1538", 1.0),  # correctness reads the answer only
    (ADD, f"<think>{ADD_STEPS}</think>1538\nconfidence: 0.9", 1.0),
    (ADD, "1538", 1.0),  # no <think> opened: the whole text is the answer
    (ADD, "</think>1538", 1.0),
    (ADD, f"<think>{ADD_STEPS}</think>1539</think>1538", 1.0),  # two </think>: the answer follows the last
    (ADD, f"<think>{ADD_STEPS}</think>01538", 1.0),
    (ADD, f"<think>{ADD_STEPS}", 0.0),  # truncated while thinking
    (ADD, "<think>1538", 0.0),  # unclosed: no answer, whatever the thought holds
    (ADD, f"<think>{ADD_STEPS}</think>1538<think>", 0.0),  # reopened after the answer
    (ADD, f"<think>{ADD_STEPS}</think>", 0.0), (ADD, f"<think>{ADD_STEPS}</think>   ", 0.0),
    (ADD, f"<think>{ADD_STEPS}</think>confidence: 0.9", 0.0),  # a confidence line alone is no answer
    (ADD, f"<think>{ADD_STEPS}</think>1538 1538", 0.0), (ADD, f"<think>{ADD_STEPS}</think>15 38", 0.0),
    (ADD, f"<think>{ADD_STEPS}</think>{ARABIC_1538}", 0.0), (ADD, f"<think>{ADD_STEPS}</think>1539", 0.0),
    (G, "<think>x</think>#### 72", 1.0), (G, "<think>so #### 72", 0.0), (G, "<think>x</think>", 0.0),
    (M, r"<think>x</think>\boxed{0.5}", 1.0), (M, r"<think>so \boxed{0.5}", 0.0),
    (C, "<think>x</think>B", 1.0), (C, "<think>The answer is B", 0.0), (C, "<think>x</think>A or B", 0.0),
    (USER, "<think>x</think>Paris City", 1.0), (USER, "<think>Paris City", 0.0),
    (STR, f"<think>{STR_STEPS}</think>CBA", 1.0), (STR, f"<think>{STR_STEPS}", 0.0),
    (CD, f"<think>{CD_STEPS}</think>3+25*4", 1.0), (CD, "<think>(25*4)+3", 0.0),
])
def test_correctness_reward_and_evaluation_agree(example, completion, reward):
  assert rewards.correctness()([""], [completion], [example])[0] == reward
  assert score(example, completion, 1).correct is bool(reward)


@pytest.mark.parametrize("completion, reward", [
    ("<think>a</think>1538", 1.0), ("  <think>a</think>1538\n", 1.0), ("<think></think>1538", 1.0),
    ("<think>a</think>1538\nconfidence: 0.5", 1.0),
    ("<think>a</think>", 0.0), ("<think>a</think>confidence: 0.9", 0.0),  # no answer
    ("<think>a", 0.0), ("1538", 0.0), ("x<think>a</think>1538", 0.0),
    ("<think>a</think>1</think>2", 0.0), ("<think>a</think>1<think>b</think>2", 0.0), ("<think><think>a</think>1", 0.0),
])
def test_format_reward(completion, reward):
  assert rewards.format_reward()([""], [completion], [ADD])[0] == reward


@pytest.mark.parametrize("example, completion, reward", [
    (ADD, f"<think>{ADD_STEPS}</think>1538", 1.0),
    (ADD, f"<think>{ADD_STEPS}</think>1539", 1.0),  # right steps, wrong answer: the steps are right (see gate)
    (ADD, "<think>5+3+0=08</think>1538", 1 / 3),  # writing less does not pay
    (ADD, "<think>5+3+0=08</think>", 1 / 3),
    (ADD, "<think>5+3+0=08\n6+7+0=13\n8+6+0=14</think>1438", 2 / 3),
    (ADD, f"<think>{ADD_STEPS}\n{ADD_STEPS}</think>1538", 1 / 2),  # nor does repeating
    (ADD, "<think>x\ny\nz</think>1538", 0.0),  # right answer, wrong steps
    (ADD, "<think></think>1538", 0.0), (ADD, "1538", 0.0),
    (ADD, f"<think>{ADD_STEPS}", 0.0),  # an unclosed thought is no rationale
    (STR, "<think>up(abc)=ABC</think>CBA", 1 / 2), (STR, f"<think>{STR_STEPS}</think>CBA", 1.0),
    (CD, "<think>25*4=100</think>(25*4)+3", 1 / 2), (CD, f"<think>{CD_STEPS}</think>(25*4)+3", 1.0),
    (CD, "<think>25+3=28\n28*4=112</think>112", 2 / 3),
    (G, "<think>48/2=24</think>72", 0.0), (USER, "<think>a</think>Paris City", 0.0),  # no step checker
])
def test_step_correctness_reward(example, completion, reward):
  assert rewards.step_correctness()([""], [completion], [example])[0] == pytest.approx(reward)


# ------------------------------------------------------------------------------------------ evaluation

@pytest.mark.parametrize("example, completion, correct, steps_ok", [
    (ADD, f"<think>{ADD_STEPS}</think>1538", True, True),
    (ADD, f"<think>{ADD_STEPS}</think>01538", True, True),
    (ADD, f"<think>{ADD_STEPS}</think>1538\nconfidence: 0.9", True, True),
    (ADD, "<think>5+3+0=08</think>1538", True, False),  # an incomplete chain is no right chain
    (ADD, "<think>5+3+0=08\n6+7+0=13</think>1538", True, False),
    (ADD, "<think></think>1538", True, False),
    (ADD, f"<think>{ADD_STEPS}\n0+0+0=00</think>1538", True, False),
    (ADD, "<think>5+3+0=08\n6+7+0=13\n8+6+0=14</think>1538", True, False),  # right answer, a wrong step
    (ADD, f"<think>{ADD_STEPS}</think>1539", False, False),  # right steps, wrong answer
    (ADD, f"<think>{ADD_STEPS}</think>1538</think>1538", True, False),  # the first </think> is in the rationale
    (ADD, f"<think>{ADD_STEPS}", False, False), (ADD, f"<think>{ADD_STEPS}</think>", False, False),
    (STR, "<think>up(abc)=ABC</think>CBA", True, False), (STR, f"<think>{STR_STEPS}</think>CBA", True, True),
    (CD, "<think>25*4=100</think>(25*4)+3", True, False), (CD, f"<think>{CD_STEPS}</think>3+4*25", True, True),
    (CD, "<think>25+3=28\n28*4=112</think>(25*4)+3", True, False),
    (G, "<think>x</think>72", True, None), (G, "<think>#### 72", False, None),
])
def test_scored_correct_and_whole_chain(example, completion, correct, steps_ok):
  scored = score(example, completion, 1)
  assert (scored.correct, scored.steps_ok) == (correct, steps_ok)


@pytest.mark.parametrize("example, completion", [
    (ADD, f"<think>{ADD_STEPS}"), (G, "<think>so #### 72"), (M, r"<think>\boxed{0.5}"), (C, "<think>B"),
    (USER, "<think>Paris City"), (ADD, "<think>x</think>  "), (ADD, "<think>x</think>confidence: 1"),
])
def test_unclosed_or_empty_is_unparsed(example, completion):
  assert score(example, completion, 1).answer is None


def vote_keys(example, answers):
  return [score(example, f"<think>x</think>{a}", 1).answer for a in answers]


def test_generated_tasks_vote_on_what_an_answer_means():
  add = vote_keys(ADD, ["1538", "01538", " 1538 ", "1539", "15 38"])
  assert add[0] == add[1] == add[2] and len(set(add[2:])) == 3
  cd = vote_keys(CD, ["(25*4)+3", "3+25*4", "4 * 25 + 3", "25*4+3*1", "100+3", "junk"])
  assert cd[0] == cd[1] == cd[2] and len(set(cd[2:])) == 4
  strings = vote_keys(STR, ["CBA", " CBA", "cba", "C B A"])
  assert strings[0] == strings[1] and len(set(strings[1:])) == 3


@pytest.mark.parametrize("example, answers", [
    (ADD, ["1539", "01538", "1538"]),  # 1538 has two votes however it is written; 1539 would win a tie
    (CD, ["100+3", "(25*4)+3", "3+4*25"]),
])
def test_maj_at_k_counts_equivalent_answers_as_one(example, answers):
  scored = [score(example, f"<think>x</think>{a}", 1) for a in answers]
  assert maj_at_k([[s.answer for s in scored]], np.array([[s.correct for s in scored]]), 3) == 1.0


@pytest.mark.parametrize("example, answers", [
    (ADD, ["1538", "01538", "1538.0", "1539", "", ARABIC_1538, "9" * 50]),
    (STR, ["CBA", " CBA", "cba", "CBA CBA"]),
    (CD, ["(25*4)+3", "3+25*4", "25*04+3", "100+3", "25*4+3*1", "text:junk", "junk", ""]),
])
def test_one_vote_key_means_one_verdict(example, answers):
  """maj@k judges a winning key by any sample that carries it, so a key must never join a right and a wrong
  answer."""
  task = get_task(example.task)
  for a in answers:
    for b in answers:
      if task.vote_key(a, example) == task.vote_key(b, example):
        assert task.verify(a, example) == task.verify(b, example), (a, b)


# ---- calibration and length rewards (adversarial) ----
# What a policy could write against the calibration reward (the RLCR form that `rl.rewards=calibration`
# means: R = y - (c - y)^2) and against the length rewards, which count the sampled tokens, eos included.

CAL_EX = Example("865+673", "5+3+0=08\n6+7+0=13\n8+6+1=15", "1538", 3, "addition", (865, 673))
CAL_RIGHT = "<think>5+3+0=08\n6+7+0=13\n8+6+1=15</think>1538"
CAL_WRONG = "<think>5+3+0=08\n6+7+0=13\n8+6+1=15</think>1539"


@pytest.mark.parametrize("completion, want", [
    # positive: a stated confidence on its own last line, as a plain decimal in [0, 1]
    (CAL_RIGHT + "\nconfidence: 1", 1.0),
    (CAL_RIGHT + "\nconfidence: 1.0", 1.0),
    (CAL_RIGHT + "\nconfidence: 0.8", 0.96),  # 1 - 0.2^2
    (CAL_RIGHT + "\nconfidence: .5", 0.75),  # a leading-dot decimal is a number
    (CAL_RIGHT + "\nconfidence: 0.50", 0.75),
    (CAL_RIGHT + "\nConfidence:0.5", 0.75),  # case and spacing
    (CAL_RIGHT + "\nconfidence: 0.8  \n", 0.96),  # trailing whitespace
    (CAL_WRONG + "\nconfidence: 0.3", -0.09),  # 0 - 0.3^2
    (CAL_WRONG + "\nconfidence: 1", -1.0),  # sure and wrong: the worst
    # a sure wrong answer: the old Brier reward's maximum (1); here no more than a right answer stated at 0
    (CAL_WRONG + "\nconfidence: 0", 0.0),
    (CAL_RIGHT + "\nconfidence: 0", 0.0),
    ("<think>5+3+0=08</think>confidence: 0.9", -0.81),  # a confidence and no answer: wrong, stated 0.9
    # no usable confidence: the lowest value the reward gives, whatever the answer
    (CAL_RIGHT, -1.0),  # missing line
    (CAL_RIGHT + "\nconfidence: 1.5", -1.0),  # above 1
    (CAL_RIGHT + "\nconfidence: -0.5", -1.0),  # below 0
    (CAL_RIGHT + "\nconfidence: 1e9", -1.0),  # not a plain decimal
    (CAL_RIGHT + "\nconfidence: 0.5abc", -1.0),
    (CAL_RIGHT + "\nconfidence: nan", -1.0),
    (CAL_RIGHT + "\nconfidence: 50%", -1.0),
    (CAL_RIGHT + "\nconfidence: 0.9\nconfidence: 0.1", -1.0),  # two confidence lines
    (CAL_RIGHT + "\nconfidence: 0.9\nconfidence: 0.9", -1.0),
    (CAL_WRONG + "\nconfidence: 0.9\nconfidence: 0", -1.0),  # a hedge scored on its last line would get 0
    ("<think>5+3+0=08\n6+7+0=13\n8+6+1=15\nconfidence: 0.9</think>1538", -1.0),  # in the rationale only
    (CAL_RIGHT + " confidence: 0.9", -1.0),  # not on a line of its own
])
def test_calibration_reward_gaming_table(completion, want):
  reward = rewards.build_reward("calibration", None, None)
  assert reward.name == "calibration"
  got = float(reward([""], [completion], [CAL_EX])[0])
  assert got == pytest.approx(want, abs=1e-6), completion


@pytest.mark.parametrize("name, completion, want", [
    ("calibration_brier", CAL_WRONG + "\nconfidence: 0", 1.0),  # the hole: kept under an explicit name only
    ("calibration_brier", CAL_RIGHT + "\nconfidence: 0.5abc", -1.0),
    ("calibration_linear", CAL_WRONG + "\nconfidence: 0", 0.0),
    ("calibration_linear", CAL_RIGHT + "\nconfidence: 0.9\nconfidence: 0.1", -1.0),
    ("calibration_linear", CAL_RIGHT, -1.0),
])
def test_old_calibration_forms_gaming_rows(name, completion, want):
  got = float(rewards.build_reward(name, None, None)([""], [completion], [CAL_EX])[0])
  assert got == pytest.approx(want, abs=1e-6), completion


def _sampled_rows(lengths, width=16, eos_id=1, pad_id=0):
  """Sampled rows as score_rewards gets them: `length` generated ids (the last one eos) then pads, and the
  mask of generated tokens."""
  mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
  last = np.arange(width)[None, :] == np.asarray(lengths)[:, None] - 1
  return np.where(last, eos_id, np.where(mask, 7, pad_id)).astype(np.int32), mask


@pytest.mark.parametrize("length, overlong, penalty", [
    # overlong: Lmax 10, Lc 4 (soft limit 6); length_penalty: target 5, scale 1, no floor
    (0, 0.0, 0.0),
    (5, 0.0, 0.0),  # length_penalty's boundary: at the target, nothing
    (6, 0.0, -0.2),  # overlong's soft boundary: nothing yet
    (7, -0.25, -0.4),
    (9, -0.75, -0.8),
    (10, -1.0, -1.0),  # Lmax exactly: the whole budget used (eos counts)
    (11, -1.0, -1.2),  # beyond Lmax
    (16, -1.0, -2.2),  # far beyond: overlong stays at -1, length_penalty keeps falling
])
def test_length_rewards_gaming_table(length, overlong, penalty):
  from rr.config import base_config
  from rr.train import grpo

  rl = base_config().rl
  rl.rewards, rl.reward_weights = "overlong,length_penalty", "1,1"
  rl.max_new_tokens, rl.overlong_buffer, rl.length_target = 10, 4, 5
  fns, _ = grpo.build_rewards(rl, None)
  tokens, mask = _sampled_rows([length])
  r, valid, failures = rewards.score_rewards(fns, ["p"], ["any text: lengths never read it"], [CAL_EX],
                                             tokens_NxC=tokens, mask_NxC=mask)
  assert valid.all() and not failures
  np.testing.assert_allclose(r[0], [overlong, penalty], rtol=1e-6, atol=1e-7)


def test_length_rewards_ignore_the_text_and_the_pads():
  """Text that re-encodes short (or long) changes nothing, and pads after eos are not generated tokens."""
  overlong = rewards.overlong_shaping(10, 4)
  tokens, mask = _sampled_rows([7, 7], width=40)
  got, valid, _ = rewards.score_rewards([overlong], ["p", "p"], ["", "x" * 1000], [CAL_EX, CAL_EX],
                                        tokens_NxC=tokens, mask_NxC=mask)
  np.testing.assert_allclose(got[:, 0], [-0.25, -0.25])
  # Without the token arrays a length reward cannot score: every row fails, none gets a free 0.
  _, valid, failures = rewards.score_rewards([overlong], ["p"], ["x"], [CAL_EX])
  assert not valid.any() and failures[0].reward == "overlong"
