"""Distil then reinforce: SFT on a share of the rationales, then GRPO from that checkpoint."""

import json
import os

import jax
import numpy as np

from rr import train
from rr.checkpoint import Checkpoints
from rr.config import apply_overrides, load_config, read_run_config
from rr.eval.__main__ import main as eval_main
from rr.train.pipeline import stage_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "distil_then_reinforce.py")


def test_stage_configs_split_the_job():
  config = load_config(CONFIG)
  sft_config, rl_config = stage_configs(config)
  assert sft_config.trainer == "sft" and sft_config.data.train_size == config.data.sft_size
  assert rl_config.trainer == "grpo" and rl_config.data.train_size == config.data.train_size
  assert rl_config.train.steps == config.rl.steps and rl_config.optim.lr == config.rl.lr
  assert config.trainer == "distil_then_reinforce"  # the job's own config is left as it was


def final_params(checkpoint_dir):
  ckpts = Checkpoints(checkpoint_dir)
  return ckpts.read_params(ckpts.latest_step())


def test_runlocal_job_runs_both_stages_and_reports_before_and_after(tmp_path):
  workdir = tmp_path / "job"
  config = load_config(CONFIG + ":runlocal")
  apply_overrides(config, [("rl.lr", "0.0")])  # GRPO then leaves its starting params unchanged
  summary = train.run(config, str(workdir))
  with open(workdir / "summary.json") as f:
    on_disk = json.load(f)
  assert on_disk["finished"] is True and "eval/accuracy_initial" in on_disk and "eval/accuracy" in on_disk
  assert summary["sft/step"] == 12 and summary["grpo/step"] == 4
  assert on_disk["eval/accuracy_initial"] == summary["sft/eval/accuracy"]
  # GRPO started from the SFT params: with a zero learning rate its final params are exactly SFT's.
  sft_params = final_params(str(workdir / "sft" / "checkpoints"))
  rl_params = final_params(str(workdir / "grpo" / "checkpoints"))
  jax.tree.map(np.testing.assert_array_equal, rl_params, sft_params)
  assert any(float(np.abs(x).sum()) > 0 for x in jax.tree.leaves(sft_params))
  # The job's config and each stage's (as stage_configs rewrote it) sit in their directories ...
  saved = {name: read_run_config(str(workdir / name / "config.json")) for name in ("", "sft", "grpo")}
  assert saved[""].to_dict() == config.to_dict()
  assert saved["sft"].trainer == "sft" and saved["sft"].data.train_size == config.data.sft_size
  assert saved["grpo"].trainer == "grpo" and saved["grpo"].init_checkpoint == str(workdir / "sft")
  # ... so rr.eval on a stage needs no --config.
  out = workdir / "grpo" / "eval_no_config"
  assert eval_main(["--checkpoint", str(workdir / "grpo"), "--out", str(out), "--k", "1", "--samples", "1",
                    "--num-examples", "2"]) == 0
  with open(out / "eval.json") as f:
    assert json.load(f)["checkpoint"] == str(workdir / "grpo" / "checkpoints")
