"""A job of stages (trainer "stages"): per-stage overrides, checkpoint chaining, checks before work, resume."""

import json
import os

import jax
import numpy as np
import pytest

from rr import train
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, apply_overrides, load_config, read_run_config, stage_names, validate
from rr.eval.__main__ import main as eval_main
from rr.train.stages import finished_summary, stage_configs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "distil_then_reinforce.py")


def test_stage_configs_apply_each_stages_overrides_and_chain_checkpoints():
  config = load_config(CONFIG)
  before = config.to_dict()
  (sft_name, sft), (rl_name, rl) = stage_configs(config, "/w")
  assert (sft_name, rl_name) == ("sft", "grpo") and stage_names(config) == ["sft", "grpo"]
  assert sft.trainer == "sft" and sft.data.train_size == 300 and sft.train.steps == 800 and sft.optim.lr == 2e-3
  assert sft.init_checkpoint == ""  # the first stage starts where the job does
  assert rl.trainer == "grpo" and rl.data.train_size == 20_000 and rl.train.steps == 600
  assert (rl.optim.lr, rl.optim.warmup_steps, rl.optim.weight_decay) == (5e-5, 50, 0.0)
  assert rl.init_checkpoint == os.path.join("/w", "sft") and rl.rl.dynamic_sampling  # shared keys stay shared
  assert all(s.stages == "" and not s.stage.keys() for s in (sft, rl))
  assert config.to_dict() == before and config.trainer == "stages"  # the job's own config is left as it was
  config.stage.grpo.init_checkpoint = ""  # a stage that names its start keeps it ("" = fresh params)
  assert stage_configs(config, "/w")[1][1].init_checkpoint == ""


def test_unknown_stage_key_is_named_with_a_suggestion(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from rr.config import base_config\n"
                 "def get_config(arg=None):\n  c = base_config()\n  c.trainer = 'stages'\n  c.stages = 'grpo'\n"
                 "  c.stage.grpo = {'trainer': 'grpo', 'train': {'stpes': 5}}\n  return c\n")
  with pytest.raises(ConfigError, match=r"unknown config key 'stage.grpo.train.stpes'.*did you mean "
                                        r"'stage.grpo.train.steps'"):
    load_config(str(bad))
  config = load_config(CONFIG)
  with pytest.raises(ConfigError, match=r"--config.stage.grpo.train.stpes: unknown key 'stpes' under "
                                        r"stage.grpo.train \(did you mean 'steps'"):
    apply_overrides(config, [("stage.grpo.train.stpes", "3")])
  with pytest.raises(ConfigError, match=r"no stage 'gpro' \(did you mean 'grpo'\?\); stages: sft, grpo"):
    apply_overrides(config, [("stage.gpro.train.steps", "3")])
  with pytest.raises(ConfigError, match=r"config key 'stage.grpo.stages'.*stages do not nest"):
    apply_overrides(config, [("stage.grpo.stages", "sft")])


def test_stage_names_and_groups_must_match_and_each_stage_validates():
  config = load_config(CONFIG)
  with pytest.raises(ConfigError, match=r"config.stages names 'extra' but there is no config.stage.extra group"):
    apply_overrides(config.copy_and_resolve_references(), [("stages", "sft,grpo,extra")])
  with pytest.raises(ConfigError, match=r"config.stage.grpo is not listed in config.stages='sft'"):
    apply_overrides(config.copy_and_resolve_references(), [("stages", "sft")])
  with pytest.raises(ConfigError, match=r"config.trainer='stages' needs config.stages"):
    apply_overrides(config.copy_and_resolve_references(), [("stages", "")])
  with pytest.raises(ConfigError, match=r"config.stage.grpo.trainer='stages': stages do not nest"):
    apply_overrides(config.copy_and_resolve_references(), [("stage.grpo.trainer", "stages")])
  with pytest.raises(ConfigError, match=r"config.stage.grpo: config.train.batch_size=0 must be positive"):
    apply_overrides(config.copy_and_resolve_references(), [("stage.grpo.train.batch_size", "0")])
  no_trainer = config.copy_and_resolve_references()
  no_trainer.stage.grpo = {"train": {"steps": 3}}
  with pytest.raises(ConfigError, match=r"config.stage.grpo.trainer is required"):
    validate(no_trainer)


def test_command_line_overrides_reach_a_stage_typed_by_the_schema():
  config = load_config(CONFIG + ":runlocal", [("stage.grpo.train.steps", "3"), ("stage.sft.optim.lr", "1e-2"),
                                              ("stage.grpo.rl.group_size", "2")])
  stages = dict(stage_configs(config, "/w"))
  assert stages["grpo"].train.steps == 3 and isinstance(stages["grpo"].train.steps, int)
  assert stages["sft"].optim.lr == 1e-2 and stages["grpo"].rl.group_size == 2  # keys the group did not hold
  assert stages["sft"].rl.group_size == config.rl.group_size == 4
  with pytest.raises(ConfigError, match=r"--config.stage.grpo.train.steps='many' is not a valid int"):
    apply_overrides(config, [("stage.grpo.train.steps", "many")])


def test_a_bad_stage_setting_stops_the_job_before_the_first_stage_runs(tmp_path):
  workdir = tmp_path / "job"
  config = load_config(CONFIG + ":runlocal", [("stage.grpo.rl.reward_weights", "1.0")])
  with pytest.raises(ConfigError, match=r"config.stage.grpo: config.rl.reward_weights has 1 weights for 2 rewards"):
    train.run(config, str(workdir))
  config = load_config(CONFIG + ":runlocal", [("stage.grpo.trainer", "gpro")])
  with pytest.raises(ConfigError, match=r"config.stage.grpo.trainer: no trainer 'gpro' is registered \(did you "
                                        r"mean 'grpo'"):
    train.run(config, str(workdir))
  assert not workdir.exists()  # neither the job's config.json nor sft/ was written


def final_params(checkpoint_dir):
  ckpts = Checkpoints(checkpoint_dir)
  return ckpts.read_params(ckpts.latest_step())


def test_runlocal_job_runs_both_stages_reports_before_and_after_and_resumes_without_retraining(tmp_path):
  workdir = tmp_path / "job"
  config = load_config(CONFIG + ":runlocal", [("stage.grpo.optim.lr", "0.0")])  # GRPO keeps its start's params
  summary = train.run(config, str(workdir))
  with open(workdir / "summary.json") as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(summary))
  assert on_disk["finished"] is True and summary["sft/step"] == 12 and summary["grpo/step"] == 4
  assert on_disk["eval/accuracy_initial"] == summary["sft/eval/accuracy"]
  assert on_disk["eval/accuracy"] == summary["grpo/eval/accuracy"]
  assert on_disk["eval/step_accuracy"] == summary["grpo/eval/step_accuracy"]
  assert on_disk["wall_seconds"] == pytest.approx(summary["sft/wall_seconds"] + summary["grpo/wall_seconds"])
  # GRPO started from the SFT params: with a zero learning rate its final params are exactly SFT's.
  sft_params = final_params(str(workdir / "sft" / "checkpoints"))
  rl_params = final_params(str(workdir / "grpo" / "checkpoints"))
  jax.tree.map(np.testing.assert_array_equal, rl_params, sft_params)
  assert any(float(np.abs(x).sum()) > 0 for x in jax.tree.leaves(sft_params))
  # The job's config and each stage's (overrides applied, checkpoint chained) sit in their directories ...
  saved = {name: read_run_config(str(workdir / name / "config.json")) for name in ("", "sft", "grpo")}
  assert saved[""].to_dict() == config.to_dict()
  assert saved["sft"].trainer == "sft" and saved["sft"].data.train_size == 64 and saved["sft"].stages == ""
  assert saved["grpo"].trainer == "grpo" and saved["grpo"].init_checkpoint == str(workdir / "sft")
  # ... so rr.eval on a stage needs no --config.
  out = workdir / "grpo" / "eval_no_config"
  assert eval_main(["--checkpoint", str(workdir / "grpo"), "--out", str(out), "--k", "1", "--samples", "1",
                    "--num-examples", "2"]) == 0
  with open(out / "eval.json") as f:
    assert json.load(f)["checkpoint"] == str(workdir / "grpo" / "checkpoints")
  # The same command again trains nothing: each finished stage's summary is read back.
  metrics = {name: (workdir / name / "metrics.jsonl").read_text() for name in ("sft", "grpo")}
  assert train.run(config, str(workdir)) == json.loads(json.dumps(summary))
  assert metrics == {name: (workdir / name / "metrics.jsonl").read_text() for name in ("sft", "grpo")}
  # A stage whose config changed since (more steps, say) runs again, resuming from its own checkpoints.
  (name, rl), = stage_configs(config, str(workdir))[1:]
  assert finished_summary(rl, str(workdir / name)) is not None
  rl.train.steps += 1
  assert finished_summary(rl, str(workdir / name)) is None
