"""Mixed-difficulty generated splits (config.data.difficulty_max) and the per-level reports of rr.eval."""

import collections
import hashlib
import json
import os

import numpy as np
import pytest

from rr.config import ConfigError, apply_overrides, load_config
from rr.data import format_completion
from rr.data.inputs import load_inputs
from rr.data.sft_batches import SFTBatches
from rr.eval import assemble, report, score
from rr.main import main
from rr.tasks import Example, TaskError, get_task, make_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py")


def md5_split(question):
  """The split rule written out again: the first 8 bytes of the question's md5, as a share of 2**64."""
  bucket = int.from_bytes(hashlib.md5(question.encode()).digest()[:8], "big") / 2.0**64
  return "test" if bucket < 0.1 else "train"


def single_level_split(name, split, size, difficulty, seed):
  """What make_split drew before difficulty_max existed: one generator seeded [seed, difficulty], distinct
  questions of the split in draw order."""
  task, rng = get_task(name), np.random.default_rng([seed, difficulty])
  seen, examples = set(), []
  while len(examples) < size:
    example = task.generate(rng, difficulty)
    if example.question not in seen and md5_split(example.question) == split:
      seen.add(example.question)
      examples.append(example)
  return examples


@pytest.mark.parametrize("name,difficulty", [("addition", 3), ("countdown", 3), ("strings", 2)])
def test_one_level_draws_exactly_what_it_drew_before(name, difficulty):
  want = single_level_split(name, "train", 150, difficulty, seed=4)
  assert make_split(name, "train", 150, difficulty, seed=4) == want
  assert make_split(name, "train", 150, difficulty, seed=4, difficulty_max=0) == want
  assert make_split(name, "train", 150, difficulty, seed=4, difficulty_max=difficulty) == want


def test_levels_are_uniform_over_the_range_and_each_example_is_at_its_level():
  examples = make_split("addition", "train", 900, 3, seed=0, difficulty_max=5)
  counts = collections.Counter(e.difficulty for e in examples)
  assert sorted(counts) == [3, 4, 5]
  assert all(abs(n - 300) < 60 for n in counts.values()), counts  # 300 +- 4 standard deviations (14.1)
  for e in examples:
    a, b = e.question.split("+")
    assert len(a) == len(b) == e.difficulty and int(e.answer) == int(a) + int(b)
  for name, low, high in (("countdown", 2, 4), ("strings", 1, 3)):
    levels = {e.difficulty for e in make_split(name, "train", 60, low, seed=0, difficulty_max=high)}
    assert levels == set(range(low, high + 1))


def test_mixed_split_is_deterministic_disjoint_and_a_prefix_of_a_larger_one():
  train = make_split("addition", "train", 600, 2, seed=0, difficulty_max=5)
  test = make_split("addition", "test", 100, 2, seed=1, difficulty_max=5)
  assert make_split("addition", "train", 600, 2, seed=0, difficulty_max=5) == train
  assert make_split("addition", "train", 250, 2, seed=0, difficulty_max=5) == train[:250]
  assert all(md5_split(e.question) == "train" for e in train) and all(md5_split(e.question) == "test" for e in test)
  assert not {e.question for e in train} & {e.question for e in test}
  assert len({e.question for e in train}) == 600
  other_seed = make_split("addition", "train", 600, 2, seed=5, difficulty_max=5)
  other_range = make_split("addition", "train", 600, 2, seed=0, difficulty_max=6)
  assert [e.question for e in other_seed] != [e.question for e in train]
  assert [e.question for e in other_range] != [e.question for e in train]


def test_levels_that_cannot_be_served_are_named():
  with pytest.raises(TaskError, match="got 1"):  # countdown needs >= 2 source numbers
    make_split("countdown", "train", 5, 1, seed=0, difficulty_max=3)
  with pytest.raises(TaskError, match="difficulty_max=2 is below difficulty=3"):
    make_split("addition", "train", 5, 3, seed=0, difficulty_max=2)
  # 1- and 2-digit sums hold about 13 + 810 test questions
  with pytest.raises(TaskError, match=r"difficulties 1\.\.2: found only 8\d\d .*config.data.difficulty_max"):
    make_split("addition", "test", 830, 1, seed=0, difficulty_max=2)


@pytest.mark.parametrize("value", ["2", "-1"])
def test_a_difficulty_max_below_difficulty_is_refused_before_work(tmp_path, capsys, value):
  workdir = tmp_path / "w"
  code = main(["--config", f"{SFT}:runlocal", f"--config.data.difficulty_max={value}", "--workdir", str(workdir)])
  err = capsys.readouterr().err
  assert code == 2 and f"config.data.difficulty_max={value}" in err and "config.data.difficulty=3" in err
  assert not workdir.exists()
  config = load_config(f"{SFT}:runlocal")
  with pytest.raises(ConfigError, match="set it to 0"):
    apply_overrides(config, [("data.difficulty_max", value)])


def test_mixed_config_serves_every_level_and_fits_the_longest_example():
  config = load_config(f"{SFT}:runlocal,mixed")
  assert (config.data.difficulty, config.data.difficulty_max) == (1, 6)
  apply_overrides(config, [("data.train_size", "120")])
  inputs = load_inputs(config)
  assert {e.difficulty for e in inputs.train} == set(range(1, 7))
  assert len({e.difficulty for e in inputs.test}) > 1
  six_digits = [e for e in inputs.train if e.difficulty == 6]
  longest = max(len(inputs.tokenizer.encode(e.question)) + len(inputs.tokenizer.encode(format_completion(e))) + 1
                for e in six_digits)
  assert longest <= config.data.max_len
  SFTBatches(inputs.train, inputs.tokenizer, 8, config.data.max_len, seed=0)  # refuses an example that is too long


def test_rr_eval_reports_the_headline_metrics_of_each_level(tmp_path):
  addition = get_task("addition")
  rng = np.random.default_rng(7)
  a, b, c = addition.generate(rng, 2), addition.generate(rng, 2), addition.generate(rng, 4)
  right = {e.question: format_completion(e) for e in (a, b, c)}
  wrong = {e.question: "<think>" + e.rationale + "</think>" + str(int(e.answer) + 1) for e in (a, b, c)}
  examples = [a, c, b]
  greedy = [score(a, right[a.question], 10), score(c, right[c.question], 12), score(b, wrong[b.question], 10)]
  sampled = [[score(a, right[a.question], 10), score(a, wrong[a.question], 10)],
             [score(c, right[c.question], 12), score(c, right[c.question], 12)],
             [score(b, wrong[b.question], 10), score(b, wrong[b.question], 10)]]
  r = assemble(examples, greedy, sampled, ks=[1, 2])
  # Level 2: a right greedy with 1 of 2 samples right, b wrong throughout; level 4: c right throughout.
  two, four = r["by_difficulty"]["2"], r["by_difficulty"]["4"]
  assert list(r["by_difficulty"]) == ["2", "4"]
  assert two["count"] == 2 and two["accuracy"] == 0.5 and two["step_accuracy"] == 0.5
  assert two["pass@1"] == pytest.approx((0.5 + 0.0) / 2) and two["pass@2"] == 0.5
  assert two["maj@2"] == 0.5 and two["cot_pass@1"] == pytest.approx(0.25)
  assert four == {"count": 1, "accuracy": 1.0, "step_accuracy": 1.0, "pass@1": 1.0, "maj@1": 1.0, "cot_pass@1": 1.0,
                  "pass@2": 1.0, "maj@2": 1.0, "cot_pass@2": 1.0, "mean_length": 12.0, "no_thought": 0.0}
  assert two["mean_length"] == 10.0 and r["no_thought"] == 0.0
  assert r["accuracy"] == pytest.approx((2 * two["accuracy"] + four["accuracy"]) / 3)
  assert r["pass@1"] == pytest.approx((2 * two["pass@1"] + four["pass@1"]) / 3)

  paths = report.write_all(str(tmp_path / "out"), r, examples, greedy, sampled)
  markdown = open(paths["report.md"]).read()
  assert "| difficulty | questions | accuracy (greedy) | step accuracy | pass@1 | pass@2 |" in markdown
  assert "| 2 | 2 | 0.500 | 0.500 | 0.250 | 0.500 |" in markdown
  assert "| 4 | 1 | 1.000 | 1.000 | 1.000 | 1.000 |" in markdown
  assert json.load(open(paths["eval.json"]))["by_difficulty"]["2"]["pass@1"] == pytest.approx(0.25)


def test_user_data_gets_one_row_without_step_accuracy(tmp_path):
  e = Example(question="capital of France?", rationale="", answer="Paris")
  greedy, sampled = [score(e, "<think>hm</think>Paris", 5)], [[score(e, "<think>hm</think>Rome", 5)]]
  r = assemble([e], greedy, sampled, ks=[1])
  assert r["by_difficulty"] == {"0": {"count": 1, "accuracy": 1.0, "pass@1": 0.0, "maj@1": 0.0, "mean_length": 5.0,
                                      "no_thought": 0.0}}
  markdown = open(report.write_all(str(tmp_path / "out"), r, [e], greedy, sampled)["report.md"]).read()
  assert "| difficulty | questions | accuracy (greedy) | pass@1 |" in markdown
  assert "| 0 | 1 | 1.000 | 0.000 |" in markdown


def test_the_test_split_can_have_its_own_levels_for_composition_depth():
  config = load_config(f"{SFT}:runlocal")
  apply_overrides(config, [("data.task", "strings"), ("data.difficulty", "1"), ("data.difficulty_max", "2"),
                           ("data.test_difficulty", "1"), ("data.test_difficulty_max", "5"), ("data.train_size", "60"),
                           ("data.test_size", "60")])
  inputs = load_inputs(config)
  assert {e.difficulty for e in inputs.train} == {1, 2}
  assert {e.difficulty for e in inputs.test} == {1, 2, 3, 4, 5}
  # The test split at its own levels is the split make_split draws for them: the same as a run trained on 1-5 sees.
  assert inputs.test == make_split("strings", "test", 60, 1, config.seed + 1, 5)
  apply_overrides(config, [("data.test_difficulty", "-1"), ("data.test_difficulty_max", "-1")])
  assert {e.difficulty for e in load_inputs(config).test} == {1, 2}  # -1: the train split's levels
  with pytest.raises(ConfigError, match="config.data.test_difficulty_max=2 is below config.data.test_difficulty=3"):
    apply_overrides(config, [("data.test_difficulty", "3"), ("data.test_difficulty_max", "2")])


def test_no_thought_counts_answers_given_with_an_empty_rationale_per_level():
  addition = get_task("addition")
  rng = np.random.default_rng(3)
  easy, hard = addition.generate(rng, 1), addition.generate(rng, 5)
  greedy = [score(easy, "<think></think>" + easy.answer, 4),  # skipped the thought, answered: counts
            score(easy, "<think> \n</think>" + easy.answer, 6),  # whitespace only: counts
            score(hard, format_completion(hard), 30),  # thought it through: does not
            score(hard, "<think>", 64)]  # cut off while thinking, no answer: does not
  r = assemble([easy, easy, hard, hard], greedy, [[g] for g in greedy], ks=[1])
  assert r["no_thought"] == 0.5
  assert r["by_difficulty"]["1"]["no_thought"] == 1.0 and r["by_difficulty"]["1"]["mean_length"] == 5.0
  assert r["by_difficulty"]["5"]["no_thought"] == 0.0 and r["by_difficulty"]["5"]["mean_length"] == 47.0
