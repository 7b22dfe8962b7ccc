"""ReST-EM as a job of stages (configs/rest_em.py): "stage:<name>" references, each round sampling from the
stage before and fine-tuning the base stage on its records, checks before the first stage, a runlocal round."""

import json
import os
import subprocess
import sys

import pytest

from rr import train
from rr.config import ConfigError, load_config, read_run_config, stage_names
from rr.data.inputs import load_inputs
from rr.train.stages import stage_configs
from rr.train.teach import teacher_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "rest_em.py")


def test_each_round_samples_from_the_stage_before_and_trains_the_base_on_its_records():
  config = load_config(CONFIG + ":rounds=2")
  assert stage_names(config) == ["base", "sample_1", "train_1", "sample_2", "train_2"]
  stages = dict(stage_configs(config, "/w"))
  assert [stages[n].trainer for n in stage_names(config)] == ["sft", "teach", "sft", "teach", "sft"]
  assert stages["base"].init_checkpoint == "" and stages["base"].data.train_size == 300
  assert teacher_path(stages["sample_1"]) == "/w/base" and teacher_path(stages["sample_2"]) == "/w/train_1"
  for r in (1, 2):
    sample, fit = stages[f"sample_{r}"], stages[f"train_{r}"]
    assert fit.init_checkpoint == "/w/base" and fit.data.rationales_path == f"/w/sample_{r}"
    assert sample.data.rationales_path == "" and sample.teach.filters == "correct,dedup"
    assert sample.data.train_size == fit.data.train_size == 2000  # the records' questions are fit's train split
  assert config.stage.train_2.init_checkpoint == "stage:base"  # the job's own config keeps the references


def test_a_reference_to_a_later_or_unknown_stage_or_a_bad_teach_stage_stops_the_job_first(tmp_path):
  workdir = tmp_path / "job"
  for override, message in (
      (("stage.sample_1.init_checkpoint", "stage:train_1"),
       r"config.stage.sample_1: init_checkpoint='stage:train_1' names stage 'train_1', which runs after 'sample_1'"),
      (("stage.train_1.data.rationales_path", "stage:train_1"), r"names stage 'train_1', which is this stage"),
      (("stage.train_1.data.rationales_path", "stage:sample_2"),
       r"data.rationales_path='stage:sample_2' names no stage of this job \(stages: base, sample_1, train_1\)"),
      (("stage.sample_1.teach.rationalise", "True"),
       r"config.stage.sample_1: config.teach.rationalise=True needs the 'correct' filter")):
    with pytest.raises(ConfigError, match=message):
      train.run(load_config(CONFIG + ":runlocal", [override]), str(workdir))
  assert not workdir.exists()  # neither the job's config.json nor base/ was written
  with pytest.raises(ConfigError, match=r"rounds=-1 must be >= 1"):
    load_config(CONFIG + ":rounds=-1")


def test_a_runlocal_round_runs_end_to_end_and_records_each_rounds_data_and_accuracy(tmp_path):
  workdir = tmp_path / "rest_em"
  # One process with JAX's compilation cache: the round's SFT and evaluation reuse the base stage's programs.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
         "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
  run = subprocess.run([sys.executable, "-m", "rr.main", "--config", CONFIG + ":runlocal", "--workdir", str(workdir)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
  assert run.returncode == 0, run.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  records = [json.loads(line) for line in (workdir / "sample_1" / "data.jsonl").read_text().splitlines()]
  assert summary["finished"] and summary["sample_1/records"] == len(records) > 0
  assert summary["sample_1/questions"] == 16 and summary["sample_1/samples"] == 32
  assert 0.0 <= summary["sample_1/teacher_accuracy"] <= 1.0 and "train_1/eval/accuracy" in summary
  assert summary["eval/accuracy"] == summary["train_1/eval/accuracy"] and "base/eval/accuracy" in summary
  assert all(r["provenance"]["teacher"] == str(workdir / "base") for r in records)  # sampled from the base
  fit = read_run_config(str(workdir / "train_1" / "config.json"))
  assert fit.init_checkpoint == str(workdir / "base") and fit.data.rationales_path == str(workdir / "sample_1")
  # train_1 trained on exactly the round's records, as examples of their train questions.
  examples = load_inputs(fit).train
  assert [(e.question, e.rationale, e.answer) for e in examples] == [
      (r["question"], r["rationale"], r["answer"]) for r in records]
  assert all(e.task == "addition" for e in examples)
  # The same command again trains and samples nothing: every stage's summary is read back.
  assert train.run(load_config(CONFIG + ":runlocal"), str(workdir)) == summary
