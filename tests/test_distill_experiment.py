"""experiments/distill.py:runlocal end to end: the teacher, its two data sets and every method of the README's
distillation table run, are evaluated, and land in one table whose teacher-token column reads the runs' files."""

import json
import os

from rr import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_distillation_experiment_runs_every_method_and_writes_its_table(tmp_path):
  spec = experiment.load_experiment(os.path.join(ROOT, "experiments", "distill.py") + ":runlocal")
  directory = str(tmp_path / "distill")
  assert experiment.run(spec, directory, seeds=[0])
  with open(os.path.join(directory, "results.json")) as f:
    results = json.load(f)
  with open(os.path.join(directory, "results.md")) as f:
    table = f.read()
  assert len(spec.methods) == 8
  for method, result in zip(spec.methods, results["methods"]):
    assert result["name"] == method.name and result["finished"] == 1
    assert result["columns"]["held-out accuracy"]["n"] == 1 and result["columns"]["pass@8"]["n"] == 1
    assert any(line.startswith(f"| {method.label} | 1/1 |") for line in table.splitlines())
  with open(os.path.join(directory, "teacher_data", "summary.json")) as f:
    sampled = json.load(f)["teacher_tokens"]
  teacher_tokens = next(c for c in spec.columns if c.title == "teacher tokens").value
  run_dir = lambda name: os.path.join(directory, name, "seed0")
  assert teacher_tokens({}, run_dir("sft_program")) == 0
  assert teacher_tokens({}, run_dir("sft_teacher")) == sampled > 0
  assert teacher_tokens({}, run_dir("logit_kd")) > 0  # the positions of the cache the kd run built
  # One budget: every method trains its student on the same number of sequences (steps x batch, stages summed).
  budgets = set()
  for method in spec.methods:
    with open(os.path.join(run_dir(method.name), "config.json")) as f:
      config = json.load(f)
    stages = [config["stage"][name] for name in config["stages"].split(",")] if config["stages"] else [{}]
    budgets.add(sum(stage.get("train", {}).get("steps", config["train"]["steps"]) for stage in stages)
                * config["train"]["batch_size"])
  assert len(budgets) == 1, budgets
