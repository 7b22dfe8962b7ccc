"""Shaping rewards (rr.rewards.shaping): cosine_length, repetition and think_skip against values worked out by hand,
on completions a policy could try; their config refusals; the multiple-choice file (rr.data.choice_file)."""

import json
import math

import numpy as np
import pytest

from rr import rewards
from rr.config import ConfigError, base_config
from rr.data import CharTokenizer, DataError, load_examples
from rr.data.answers import LETTERS, verify_choice
from rr.data.choice_file import write_choice_file
from rr.rewards.shaping import CosineCurve
from rr.tasks import Example, get_task, make_split
from rr.train.rl_config import build_rewards
from scripted_rollouts import ScriptedSampler, scripted_collector

TOK = CharTokenizer()
EOS, PAD = TOK.eos_id, TOK.pad_id
SUM = Example(question="478+256", rationale="8+6+0=14\n7+5+1=13\n4+2+1=07", answer="734", difficulty=3,
              task="addition", meta=(478, 256))
EASY = Example(question="3+5", rationale="3+5+0=08", answer="8", difficulty=1, task="addition", meta=(3, 5))
RIGHT = "<think>8+6+0=14</think>734"


def rl_config(**rl):
  c = base_config().rl
  c.update(rl)
  return c


def view_of(rows, examples, width):
  """A RolloutView of completions given as (text, generated tokens L, ended with eos): the text encoded and padded
  with spaces to L tokens (eos the L-th when ended), as the collector lays out what the sampler returned."""
  tokens = np.full((len(rows), width), PAD, np.int32)
  lengths = []
  for i, (text, length, ended) in enumerate(rows):
    ids = TOK.encode(text)
    ids = ids + TOK.encode(" ") * (length - int(ended) - len(ids)) + [EOS] * int(ended)
    assert len(ids) == length <= width, (text, length)
    tokens[i, :length] = ids
    lengths.append(length)
  mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
  completions = [TOK.decode([t for t in row[:n] if t != EOS]) for row, n in zip(tokens, lengths)]
  return rewards.RolloutView([""] * len(rows), completions, list(examples), [[5]] * len(rows), tokens, mask,
                             np.zeros(tokens.shape, np.float32))


# ------------------------------------------------------------------------------------------ cosine_length


def test_cosine_length_follows_the_cosine_from_short_to_long_and_a_cut_row_gets_exceed():
  lmax = 40
  reward = rewards.build_reward("cosine_length", rl_config(max_new_tokens=lmax), TOK)
  assert isinstance(reward, rewards.RolloutReward)
  # The paper's values (the defaults): right 2 -> 1, wrong -10 -> 0, cut off -10.
  curve = lambda short, long, length: long + (short - long) * (1 + math.cos(math.pi * length / lmax)) / 2
  assert CosineCurve(2.0, 1.0).at(0, lmax) == 2.0 and CosineCurve(-10.0, 0.0).at(0, lmax) == -10.0  # L = 0
  rows = [
      (RIGHT, 20, True),  # right at Lmax / 2: halfway, 1.5
      (RIGHT, 40, True),  # right at Lmax, ended with eos: the long value, 1
      (RIGHT, 40, False),  # the same text cut at the budget without eos: exceed
      ("<think>8+6+0=14</think>735", 20, True),  # wrong at Lmax / 2: -5
      ("<think>8+6+0=14</think>735", 40, True),  # wrong at Lmax: 0 (the paper pays a long wrong answer more)
      ("<think>8+6+0=14</think>734 735", 18, True),  # two answers: wrong
      ("<think>8+6+0=14 734", 14, True),  # the think never closed: no answer, wrong
      ("", 1, True),  # eos alone: L = 1, wrong
      ("", 0, False),  # nothing sampled, no eos: cut
  ]
  got = reward(view_of(rows, [SUM] * len(rows), 48))
  want = [1.5, 1.0, -10.0, -5.0, 0.0, curve(-10, 0, 18), curve(-10, 0, 14), curve(-10, 0, 1), -10.0]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert curve(2, 1, 18) > got[5]  # the same length right would have earned more


def test_cosine_length_through_the_collector_with_correctness_at_weight_zero_and_the_other_shaping_rewards():
  config = base_config()
  config.rl.update(group_size=2, prompts_per_step=2, max_new_tokens=8,
                   rewards="cosine_length,correctness,repetition,think_skip", reward_weights="1,0,0.1,0.5",
                   repetition_ngram=2, easy_difficulty=2)
  script = [("</think>734", -0.1), ("</think>73", -0.2),  # SUM: right in 5 tokens (eos included), wrong in 4
            ("<think></think>8", -0.3), ("<think>8888888", -0.4)]  # EASY: skipped and right; cut, no eos, repeats
  sampler = ScriptedSampler(TOK, script)
  rollouts = scripted_collector(config, sampler, TOK, [SUM, EASY]).collect(None, step=0)
  groups = rollouts.sampled
  np.testing.assert_array_equal(groups.lengths, [5, 4, 4, 8])
  curve = lambda short, long, length: long + (short - long) * (1 + math.cos(math.pi * length / 8)) / 2
  # columns: cosine_length, correctness, repetition (2-grams up to eos), think_skip
  want = np.array([[curve(2, 1, 5), 1, 0, 0],  # "</think>","7","3","4": no 2-gram twice
                   [curve(-10, 0, 4), 0, 0, 0],
                   [curve(2, 1, 4), 1, 0, 1],
                   [-10, 0, -5 / 7, 0]])  # 8 tokens, no eos: 7 2-grams, ("<think>","8") then ("8","8") six times
  np.testing.assert_allclose(groups.rewards_NxK, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(groups.total_N, want @ np.array([1, 0, 0.1, 0.5]), rtol=1e-6)
  np.testing.assert_array_equal(groups.passed_N, [True, False, True, False])  # correctness still says who passed
  assert not rollouts.failures


@pytest.mark.parametrize("setting, message", [
    ({"cosine_wrong_short": 2.0}, r"rl.cosine_correct_short=2 must be above rl.cosine_wrong_short=2, else a wrong "
                                  r"answer of 0 tokens"),
    ({"cosine_wrong_long": 1.5}, r"rl.cosine_correct_long=1 must be above rl.cosine_wrong_long=1.5, else a wrong "
                                 r"answer of rl.max_new_tokens tokens"),
    ({"cosine_exceed": 0.0}, r"rl.cosine_exceed=0 must be below the best a finished wrong answer earns"),
    ({"cosine_correct_long": float("nan")}, r"rl.cosine_correct_long=nan must be finite"),
])
def test_cosine_length_refuses_settings_where_being_wrong_or_cut_off_pays(setting, message):
  with pytest.raises(ConfigError, match=message):
    build_rewards(rl_config(rewards="cosine_length", reward_weights="1", **setting), TOK)
  # Wrong answers that pay less than right ones at every length, and a cut-off below them, are fine
  build_rewards(rl_config(rewards="cosine_length", reward_weights="1", cosine_wrong_short=-1.0,
                          cosine_wrong_long=0.5, cosine_exceed=-2.0), TOK)


# ------------------------------------------------------------------------------------------ repetition


def id_view(rows, width=10):
  """A RolloutView of raw id rows (eos written where a row ended), padded; texts unused by `repetition`."""
  tokens = np.full((len(rows), width), PAD, np.int32)
  for i, row in enumerate(rows):
    tokens[i, :len(row)] = row
  mask = np.arange(width)[None, :] < np.array([len(r) for r in rows])[:, None]
  return rewards.RolloutView([""] * len(rows), [""] * len(rows), [SUM] * len(rows), [[5]] * len(rows), tokens, mask,
                             np.zeros(tokens.shape, np.float32))


def test_repetition_is_minus_the_share_of_ngrams_that_repeat_an_earlier_one():
  three = rewards.build_reward("repetition", rl_config(repetition_ngram=3), TOK)
  rows = [[10, 11, 12, 10, 11, 12, EOS],  # 3-grams 10-11-12, 11-12-10, 12-10-11, 10-11-12: one of four repeats
          [10, 11, 12, 13, 14, 15, EOS],  # none repeats
          [10, 11, EOS],  # shorter than n: 0
          [10, 10, 10, 10, 10, 10, 10, 10, 10, 10],  # cut off (no eos): 8 3-grams, all but the first repeat
          [EOS]]  # empty
  np.testing.assert_allclose(three(id_view(rows)), [-1 / 4, 0, 0, -7 / 8, 0], rtol=1e-6)
  two = rewards.build_reward("repetition", rl_config(repetition_ngram=2), TOK)
  # eos is not part of the text: 7,7,7 has 2-grams (7,7) twice, one repeat of two (with eos it would be one of three)
  np.testing.assert_allclose(two(id_view([[7, 7, 7, EOS], [7, 8, 7, 8, 7, EOS]])), [-1 / 2, -2 / 4], rtol=1e-6)
  with pytest.raises(ConfigError, match=r"rl.repetition_ngram=0 must be an integer >= 1"):
    build_rewards(rl_config(rewards="correctness,repetition", reward_weights="1,0.1", repetition_ngram=0), TOK)


# ------------------------------------------------------------------------------------------ think_skip


def test_think_skip_pays_only_a_right_answer_after_an_empty_thought_on_an_easy_question():
  reward = rewards.build_reward("think_skip", rl_config(easy_difficulty=2), TOK)
  cases = [
      ("<think></think>8", EASY, 1),
      ("<think> \n\t </think>8", EASY, 1),  # whitespace inside is still no thought
      ("  <think></think> 8 \n", EASY, 1),
      ("<think></think>8\nconfidence: 0.9", EASY, 1),  # a stated confidence is part of the answer's line, not a thought
      ("8", EASY, 0),  # no think block at all
      ("<think>8", EASY, 0),  # an unclosed think: no answer
      ("<think></think>9", EASY, 0),  # wrong without a rationale
      ("<think></think>", EASY, 0),  # no answer
      ("<think>3+5+0=08</think>8", EASY, 0),  # a rationale was written
      ("<think>.</think>8", EASY, 0),
      ("3+5 is 8 <think></think>8", EASY, 0),  # the reasoning moved before the block
      ("<think></think></think>8", EASY, 0),  # two closing tags
      ("<think></think>8<think></think>", EASY, 0),  # a second block after the answer
      ("<think></think>8 9", EASY, 0),  # two answers
      ("<think></think>734", SUM, 0),  # right, but a hard question (difficulty 3 > 2)
      ("<think></think>8", Example(question="3+5", rationale="", answer="8"), 0),  # user data: no level, never easy
  ]
  got = reward([""] * len(cases), [c for c, _, _ in cases], [e for _, e, _ in cases])
  np.testing.assert_array_equal(got, [want for _, _, want in cases])
  fns, weights = build_rewards(rl_config(rewards="correctness,think_skip", reward_weights="1,0.5"), TOK)
  assert [rewards.reward_name(f) for f in fns] == ["correctness", "think_skip"] and weights.tolist() == [1, 0.5]
  with pytest.raises(ConfigError, match=r"rl.easy_difficulty=0 must be an integer >= 1"):
    build_rewards(rl_config(rewards="correctness,think_skip", reward_weights="1,0.5", easy_difficulty=0), TOK)


# ------------------------------------------------------------------------------------------ the choice file


@pytest.mark.parametrize("task, difficulty", [("addition", 3), ("strings", 2), ("countdown", 3), ("addition", 1)])
def test_a_choice_file_reads_back_with_rrs_loader_and_its_verifier_takes_exactly_the_gold_letter(tmp_path, task,
                                                                                                difficulty):
  path = str(tmp_path / "sub" / "choice.jsonl")
  records = write_choice_file(path, task, "test", 12, difficulty, seed=5, options=4)
  family, plain = get_task(task), make_split(task, "test", 12, difficulty, 5)
  lines = [json.loads(line) for line in open(path, encoding="utf-8")]
  assert lines == records and len(records) == 12
  examples = load_examples("jsonl", "choice", path)  # data.source=jsonl, data.format=choice
  golds = []
  for record, example, source in zip(records, examples, plain):
    choices, gold = record["choices"], record["answer"]
    assert record["question"] == source.question and choices[gold] == source.answer
    assert len(choices) == 4 and len({family.vote_key(c, source) for c in choices}) == 4  # distinct meanings
    assert [family.verify(c, source) for c in choices] == [i == gold for i in range(4)]  # only the gold is right
    assert example.question == "\n".join([source.question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)])
    assert example.task == "choice" and example.answer == LETTERS[gold]
    assert [verify_choice(letter, example) for letter in "ABCD"] == [letter == LETTERS[gold] for letter in "ABCD"]
    assert verify_choice(f"The answer is ({LETTERS[gold]})", example) and not verify_choice("A or B", example)
    golds.append(gold)
  if task == "addition" and difficulty == 3:
    assert len(set(golds)) > 1  # the gold's place is drawn
    for record in records:  # near: one digit moved, so the value is off by at most 3 in one place
      assert all(c.isdigit() and not c.startswith("0") for c in record["choices"])
      off = [abs(int(c) - int(record["choices"][record["answer"]])) for c in record["choices"]]
      assert all(d in (0, 1, 2, 3, 10, 20, 30, 100, 200, 300, 1000, 2000, 3000) for d in off), record


def test_the_choice_file_is_seeded_never_overwritten_and_refuses_impossible_options(tmp_path):
  a = write_choice_file(str(tmp_path / "a.jsonl"), "addition", "train", 6, 2, seed=1)
  b = write_choice_file(str(tmp_path / "b.jsonl"), "addition", "train", 3, 2, seed=1)
  c = write_choice_file(str(tmp_path / "c.jsonl"), "addition", "train", 6, 2, seed=2)
  assert b == a[:3] and c != a  # a smaller size writes a prefix; another seed another file
  before = (tmp_path / "a.jsonl").read_text()
  with pytest.raises(DataError, match=r"a.jsonl' already exists; rr never overwrites data"):
    write_choice_file(str(tmp_path / "a.jsonl"), "addition", "train", 6, 2, seed=1)
  assert (tmp_path / "a.jsonl").read_text() == before
  with pytest.raises(DataError, match=r"options=1 must be between 2 and 26"):
    write_choice_file(str(tmp_path / "d.jsonl"), "addition", "train", 6, 2, seed=1, options=1)
  with pytest.raises(DataError, match=r"has only \d+ wrong answers near its answer, fewer than the 25 distractors"):
    write_choice_file(str(tmp_path / "e.jsonl"), "addition", "train", 6, 1, seed=1, options=26)
  assert not (tmp_path / "d.jsonl").exists() and not (tmp_path / "e.jsonl").exists()
