"""Issue 14's experiments: configs/guided_rl.py's methods set their keys, the harder tasks' :mixed lengths hold
their longest examples, and experiments/guided_rl.py and composition_rl.py run end to end at :runlocal."""

import dataclasses
import json
import math
import os
import runpy

import pytest

from rr import experiment, tasks
from rr.config import ConfigError, load_config
from rr.data.prompts import format_completion, format_prompt
from rr.data.tokenizers import CharTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
EXPERIMENTS = os.path.join(ROOT, "experiments")


def guided(arg):
  return load_config(os.path.join(CONFIGS, "guided_rl.py") + ":" + arg)


def test_each_guided_rl_method_sets_its_own_keys_and_only_those():
  plain = guided("method=grpo")
  assert (plain.rl.guide, plain.rl.prefix_rollouts, plain.rl.sft_steps, plain.rl.prompt_source) == (
      False, 0, "none", "uniform")
  assert (plain.data.task, plain.data.difficulty, plain.data.difficulty_max) == ("addition", 1, 6)
  changed = {"guide": {"guide": True}, "prefix_rft": {"prefix_rollouts": 1}, "relift": {"sft_steps": "relift"},
             "sasr": {"sft_steps": "sasr"}, "sec": {"prompt_source": "sec"}}
  method_keys = ("guide", "prefix_rollouts", "sft_steps", "prompt_source")
  for method, wanted in changed.items():
    rl = guided(f"method={method}").rl
    for key in method_keys:
      assert rl[key] == wanted.get(key, plain.rl[key]), (method, key)
  assert guided("method=guide").rl.guide_quantile == 0.9  # the papers' settings
  prefix = guided("method=prefix_rft").rl
  assert (prefix.prefix_high, prefix.prefix_low_start, prefix.prefix_low_end, prefix.prefix_entropy_top) == (
      0.95, 0.95, 0.05, 0.2)
  assert guided("method=relift").rl.relift_buffer == 16 and guided("method=relift,runlocal").rl.relift_buffer == 2
  strings = guided("method=sec,task=strings")
  assert (strings.data.task, strings.data.difficulty_max, strings.rl.prompt_source) == ("strings", 5, "sec")
  with pytest.raises(ConfigError, match="method='ppo' is not one of"):
    guided("method=ppo")


@pytest.mark.parametrize("task", ["addition", "countdown", "strings"])
def test_the_mixed_tasks_lengths_hold_every_generated_example(task):
  """Prompt + completion + eos within data.max_len, completion + eos within the sampling lengths, on 3,000 train
  and 500 test questions of two seeds (the configs' comments say how the bounds were measured)."""
  sft = load_config(os.path.join(CONFIGS, "sft.py") + f":mixed,task={task}")
  grpo = load_config(os.path.join(CONFIGS, "grpo.py") + f":mixed,task={task}")
  levels = {"addition": (1, 6), "countdown": (4, 6), "strings": (1, 5)}[task]
  assert (sft.data.task, sft.data.difficulty, sft.data.difficulty_max) == (task, *levels)
  assert (grpo.data.task, grpo.data.difficulty, grpo.data.difficulty_max, grpo.data.max_len) == (
      task, *levels, sft.data.max_len)
  tokenizer = CharTokenizer()
  longest_total = longest_completion = 0
  for seed in (0, 1):
    for split, size in (("train", 3000), ("test", 500)):
      for example in tasks.make_split(task, split, size, *levels[:1], seed, levels[1]):
        prompt = len(tokenizer.encode(format_prompt(example.question)))
        completion = len(tokenizer.encode(format_completion(example))) + 1
        longest_total = max(longest_total, prompt + completion)
        longest_completion = max(longest_completion, completion)
  assert longest_total <= sft.data.max_len
  assert longest_completion <= min(sft.eval.max_new_tokens, grpo.rl.max_new_tokens, grpo.eval.max_new_tokens)
  # The bounds are near the longest examples, not loose guesses: within 16 tokens of them.
  assert sft.data.max_len - longest_total < 16 and sft.eval.max_new_tokens - longest_completion < 16


def test_the_strings_worst_case_fits():
  """Depth 5 on 6 letters with "dup" innermost and four more three-letter functions that keep the 12 letters: the
  longest strings example the generator allows, 32 prompt tokens (with the newline) + 163 completion tokens with eos
  (by hand: 6 + 5 * 5 + 1; think tags 2, steps 24 + 4 * 30, 4 newlines, answer 12, eos 1)."""
  word = "bcdfgh"
  functions = ("dup", "rev", "swp", "rot", "srt")
  example = tasks.Example(question="srt(rot(swp(rev(dup(bcdfgh)))))", rationale="\n".join(
      tasks.strings.teacher_steps(word, functions)), answer=tasks.strings.intermediates(word, functions)[-1],
      difficulty=5, task="strings", meta=(word, functions))
  tokenizer = CharTokenizer()
  prompt = len(tokenizer.encode(format_prompt(example.question)))
  completion = len(tokenizer.encode(format_completion(example))) + 1
  assert (prompt, completion) == (32, 163)
  config = load_config(os.path.join(CONFIGS, "sft.py") + ":mixed,task=strings")
  assert prompt + completion <= config.data.max_len and completion <= config.eval.max_new_tokens


def test_task_needs_the_mixed_variant_and_a_known_name():
  with pytest.raises(ConfigError, match="pass mixed,task="):
    load_config(os.path.join(CONFIGS, "sft.py") + ":task=countdown")
  with pytest.raises(ConfigError, match="task='chess' is not one of"):
    load_config(os.path.join(CONFIGS, "grpo.py") + ":mixed,task=chess")


def read_results(directory):
  with open(os.path.join(directory, "results.json")) as f:
    return json.load(f)


def test_guided_rl_runlocal_runs_every_method_into_one_table_and_a_token_plot(tmp_path):
  path = os.path.join(EXPERIMENTS, "guided_rl.py")
  spec = experiment.load_experiment(path + ":runlocal")
  assert [m.name for m in spec.methods] == ["grpo", "guide", "prefix_rft", "relift", "sasr", "sec"]
  # Two of the six keep the suite fast: each method's own run is tested beside its code (tests/test_guide.py,
  # test_prefix_rft.py, test_sft_steps.py, test_sec_curriculum.py); this checks the table and the token plot.
  spec = dataclasses.replace(spec, methods=[m for m in spec.methods if m.name in ("grpo", "prefix_rft")])
  directory = str(tmp_path / "guided")
  assert experiment.run(spec, directory, seeds=[0])
  results = read_results(directory)
  assert [m["name"] for m in results["methods"]] == ["grpo", "prefix_rft"]
  titles = ["held-out accuracy", "accuracy, 6 digits", "pass@8", "all-failed groups", "demo tokens",
            "sampled tokens", "RL steps", "wall time (s)"]
  assert results["columns"] == titles
  rows_of = {}
  for method in results["methods"]:
    with open(os.path.join(directory, method["name"], "seed0", "metrics.jsonl")) as f:
      rows_of[method["name"]] = [json.loads(line) for line in f if line.strip()]
  for method in results["methods"]:
    assert method["finished"] == 1, method
    for title in titles:
      assert method["columns"][title]["n"] == 1 and math.isfinite(method["columns"][title]["mean"]), (method, title)
  values = {r["method"]: r["values"] for r in results["runs"]}
  assert values["grpo"]["demo tokens"] == 0 and values["prefix_rft"]["demo tokens"] > 0
  # The all-failed column is the mean over the logged steps, by hand from the run's metrics file.
  rows = rows_of["grpo"]
  fractions = [r["train/frac_all_failed"] for r in rows if "train/frac_all_failed" in r]
  assert fractions and values["grpo"]["all-failed groups"] == pytest.approx(sum(fractions) / len(fractions))
  # The token axis: the step-0 evaluation at 0 tokens, then each evaluation at the tokens sampled by its step.
  module = runpy.run_path(path)
  points = module["accuracy_against_tokens"](os.path.join(directory, "grpo", "seed0"))
  tokens_by_step = {r["step"]: r["train/total_sampled_tokens"] for r in rows if "train/total_sampled_tokens" in r}
  evaluated = [r["step"] for r in rows if "eval/accuracy" in r]
  assert [x for x, _ in points] == [0.0] + [tokens_by_step[s] for s in evaluated[1:]]
  out = module["plot_accuracy_against_tokens"](directory, str(tmp_path / "plot.png"), seeds=(0,))
  assert out and os.path.getsize(out) > 1000


def test_composition_runlocal_reports_each_depth_before_and_after_rl(tmp_path):
  spec = experiment.load_experiment(os.path.join(EXPERIMENTS, "composition_rl.py") + ":runlocal")
  directory = str(tmp_path / "composition")
  assert experiment.run(spec, directory, seeds=[0])
  results = read_results(directory)
  (method,) = results["methods"]
  assert method["name"] == "grpo_depth2" and method["finished"] == 1
  run = results["runs"][0]["values"]
  for depth in range(1, 6):
    before, after, gain = (run[f"depth {depth} {part}"] for part in ("before", "after", "gain"))
    assert all(math.isfinite(v) for v in (before, after, gain))
    assert gain == pytest.approx(after - before)
  # Before RL is the SFT checkpoint: the shared SFT run's own final evaluation, depth by depth.
  with open(os.path.join(directory, "sft", "summary.json")) as f:
    sft = json.load(f)
  for depth in range(1, 6):
    assert run[f"depth {depth} before"] == pytest.approx(sft[f"eval/accuracy/difficulty_{depth}"])
