"""Issue 15's experiment: configs/rationale_rewards.py's methods set their own keys, every config of
experiments/rationale_rewards.py builds and validates, and a slice of its :runlocal grid runs end to end into the
table and the --report tables."""

import dataclasses
import os
import runpy

import pytest

from rr import experiment
from rr.config import ConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
FILE = os.path.join(ROOT, "experiments", "rationale_rewards.py")


def method(name, arg=""):
  return load_config(os.path.join(CONFIGS, "rationale_rewards.py") + f":method={name}" + arg)


def test_each_method_changes_only_its_rewards_and_what_the_policy_reads():
  plain = method("grpo")
  assert (plain.rl.rewards, plain.rl.reward_weights, plain.rl.reward_combine) == ("correctness", "1.0", "weighted_sum")
  assert (plain.data.task, plain.data.difficulty, plain.data.difficulty_max) == ("addition", 1, 6)
  wanted = {"gated": ("format,correctness,step_correctness", "1,1,1", "gate"),
            "ungated": ("format,correctness,step_correctness", "1,1,1", "weighted_sum"),
            "length": ("cosine_length,correctness,repetition", "1,0,1", "weighted_sum"),
            "think_skip": ("correctness,think_skip", "1,0.5", "weighted_sum"),
            "calibration": ("calibration", "1", "weighted_sum"),
            "info_gain": ("info_gain", "1", "weighted_sum"),
            "understanding": ("understanding", "1", "weighted_sum")}
  for name, (rewards, weights, combine) in wanted.items():
    c = method(name)
    assert (c.rl.rewards, c.rl.reward_weights, c.rl.reward_combine) == (rewards, weights, combine), name
    assert c.rl.advantage == ("rloo" if name == "info_gain" else "grpo"), name
    assert c.data.format == ("text" if name == "info_gain" else "rationale"), name
    assert c.data.prompt_context == ("answer" if name == "understanding" else ""), name
    assert (c.optim.lr, c.rl.eps_high, c.rl.aggregation) == (plain.optim.lr, 0.28, "token-mean"), name
  with pytest.raises(ConfigError, match="method='rlhf' is not one of"):
    method("rlhf")


def test_every_run_of_the_full_grid_builds_and_validates(tmp_path):
  """plan() builds and checks all 13 shared runs' and 15 methods x 3 seeds' configs before anything runs; the
  budgets are the ones the README states."""
  shared, runs = experiment.plan(experiment.load_experiment(FILE), str(tmp_path / "grid"))
  assert [r.name for r in shared] == ["sft", "sft_dropout", "confidence_data", "sft_confidence", "teacher_sft",
                                      "teacher_rl", "explanations_before", "explanations_after", "negatives",
                                      "choice_data", "sft_choice", "confidence_choice", "sft_choice_confidence"]
  assert len(runs) == 15 * 3
  by_name = {r.name: r.config for r in shared + runs}
  assert by_name["sft_dropout"].data.thought_dropout == 0.5 and by_name["confidence_data"].teach.confidence
  assert by_name["teacher_rl"].rl.understanding_student == str(tmp_path / "grid" / "sft")
  assert by_name["explanations_after"].teach.teacher == str(tmp_path / "grid" / "teacher_rl")
  assert by_name["explanations_after"].data.prompt_context == "answer"
  assert by_name["negatives"].teach.filters == "wrong,dedup"
  rl_rows = [r for r in runs if r.config.trainer == "grpo"]
  assert len(rl_rows) == 11 * 3 and {r.config.rl.max_sampled_tokens for r in rl_rows} == {150_000}
  choice = by_name["calibration_choice/seed0"]
  assert (choice.data.source, choice.data.format, choice.rl.rewards) == ("jsonl", "choice", "calibration")
  assert choice.init_checkpoint == str(tmp_path / "grid" / "sft_choice_confidence")
  assert choice.data.train_path == str(tmp_path / "grid" / "choice_data" / "train.jsonl")
  assert not os.path.exists(choice.data.train_path)  # written by the choice_data run, not while the plan is checked
  assert by_name["think_skip/seed1"].init_checkpoint == str(tmp_path / "grid" / "sft_dropout")
  assert by_name["calibration/seed2"].init_checkpoint == str(tmp_path / "grid" / "sft_confidence")
  students = [r for r in runs if r.name.startswith(("student_", "dpo"))]
  assert {(r.config.train.steps, r.config.train.batch_size, r.config.data.train_size) for r in students} == {
      (100, 64, 2000)}
  assert by_name["dpo/seed0"].dpo.negatives == str(tmp_path / "grid" / "negatives")


def test_a_slice_of_the_runlocal_grid_runs_into_the_table_and_the_report(tmp_path):
  """The sft start and the gated row at :runlocal (the other rows' trainers and rewards have end-to-end tests of
  their own): the row finishes, is evaluated on the task's questions, and the --report tables read it."""
  module = runpy.run_path(FILE)
  full = module["get_experiment"]("runlocal")
  keep = {"gated"}
  small = dataclasses.replace(full, methods=[m for m in full.methods if m.name in keep],
                              shared=[s for s in full.shared if s.name == "sft"])
  directory = str(tmp_path / "grid")
  experiment.run(small, directory, source=FILE)
  results = open(os.path.join(directory, "results.md")).read()
  assert "| gated process reward (Posterior-GRPO) | 1/1 |" in results
  for name in keep:
    run_dir = os.path.join(directory, name, "seed0")
    assert experiment.current_evaluation(run_dir)["num_examples"] == 4
    assert experiment.curve(run_dir, "train/rewards/step_correctness/mean")  # logged every step
  rows = module["step_reward_rows"](directory, ("gated", "ungated"))  # ungated did not run: its cells are empty
  assert [r[0] for r in rows] == ["gated process reward (Posterior-GRPO)", "ungated process reward (sum)"]
  assert all(cell != "–" for cell in rows[0][1:]) and all(cell == "–" for cell in rows[1][1:])
  report = open(module["write_report"](directory)).read()
  assert "## Process reward, gated and not" in report and "## RLT: the teacher's reward" in report
