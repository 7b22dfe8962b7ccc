"""Configs: every file in configs/ builds and validates; typos and ill-typed overrides fail by name."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from rr.config import ConfigError, apply_overrides, load_config, parse_arg, validate
from rr.main import parse_command_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_ARGS = {"sft_jsonl.py": "train=/nonexistent/train.jsonl,test=/nonexistent/test.jsonl",
               "hf_sft.py": "model=/nonexistent/model", "hf_grpo.py": "model=/nonexistent/model",
               "teach.py": "teacher=/nonexistent/teacher", "gkd.py": "teacher=/nonexistent/teacher"}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
@pytest.mark.parametrize("runlocal", [False, True])
def test_every_config_file_builds_and_validates(path, runlocal):
  args = [a for a in (CONFIG_ARGS.get(os.path.basename(path), ""), "runlocal" if runlocal else "") if a]
  config = load_config(f"{path}:{','.join(args)}" if args else path)
  validate(config)
  if runlocal:
    assert config.train.steps <= 50 and (config.model.preset == "nano" or config.model.hf_path)


@pytest.mark.parametrize("name", ["hf_sft.py", "hf_grpo.py"])
def test_hf_configs_ask_for_the_model_directory(name):
  with pytest.raises(ConfigError, match=f"configs/{name}:model="):
    load_config(os.path.join(ROOT, "configs", name))


def test_unknown_override_key_names_the_key_and_a_suggestion():
  config = load_config(os.path.join(ROOT, "configs", "sft.py"))
  with pytest.raises(ConfigError, match=r"unknown key 'stpes'.*did you mean 'steps'"):
    apply_overrides(config, [("train.stpes", "3")])
  with pytest.raises(ConfigError, match=r"unknown key 'nope' under config"):
    apply_overrides(config, [("nope.x", "3")])


def test_ill_typed_override_is_rejected_and_good_ones_are_typed():
  config = load_config(os.path.join(ROOT, "configs", "sft.py"))
  with pytest.raises(ConfigError, match=r"train.steps='ten' is not a valid int"):
    apply_overrides(config, [("train.steps", "ten")])
  with pytest.raises(ConfigError, match=r"model.embed_one_hot='maybe' is not a valid bool"):
    apply_overrides(config, [("model.embed_one_hot", "maybe")])
  apply_overrides(config, [("train.steps", "7"), ("optim.lr", "3e-4"), ("model.embed_one_hot", "false")])
  assert config.train.steps == 7 and config.optim.lr == 3e-4 and config.model.embed_one_hot is False


def test_semantic_errors_name_the_key():
  config = load_config(os.path.join(ROOT, "configs", "sft.py"))
  with pytest.raises(ConfigError, match=r"config.train.batch_size=0 must be positive"):
    apply_overrides(config, [("train.batch_size", "0")])
  config = load_config(os.path.join(ROOT, "configs", "sft.py"))
  apply_overrides(config, [("trainer", "gpro")])  # a registered name is checked where trainers are known
  from rr import train
  with pytest.raises(ConfigError, match=r"config.trainer: no trainer 'gpro' is registered \(did you mean 'grpo'"):
    train.run(config, "/nonexistent/never-written")


def test_config_file_with_a_typo_key_is_rejected(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from rr.config import base_config\n"
                 "def get_config(arg=None):\n  c = base_config()\n  c.train.stepz = 5\n  return c\n")
  with pytest.raises(ConfigError, match=r"unknown config key 'train.stepz'.*did you mean 'train.steps'"):
    load_config(str(bad))
  with pytest.raises(ConfigError, match=r"does not exist"):
    load_config(str(tmp_path / "missing.py"))


def test_parse_arg_types_and_unknown_names():
  args = parse_arg("runlocal,size=3,name=x", runlocal=False, size=1, name="")
  assert args.runlocal is True and args.size == 3 and args.name == "x"
  with pytest.raises(ConfigError, match=r"'sizes' is unknown"):
    parse_arg("sizes=3", size=1)


def test_command_line_forms():
  spec, overrides, workdir = parse_command_line(
      ["--config", "configs/sft.py:runlocal", "--config.train.steps=3", "--config.optim.lr", "0.1", "--workdir=/w"])
  assert spec == "configs/sft.py:runlocal" and workdir == "/w"
  assert overrides == [("train.steps", "3"), ("optim.lr", "0.1")]
  with pytest.raises(ConfigError, match="unknown argument"):
    parse_command_line(["--config", "x.py", "--lr=3"])


def test_main_exits_nonzero_with_one_message_before_work(tmp_path):
  result = subprocess.run([sys.executable, "-m", "rr.main", "--config", "configs/sft.py:runlocal",
                           "--config.train.stpes=3", "--workdir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "unknown key 'stpes'" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def _rl(rewards, weights):
  rl = load_config(os.path.join(ROOT, "configs", "grpo.py")).rl
  rl.rewards, rl.reward_weights = rewards, weights
  return rl


def test_best_expected_reward_matches_the_closed_forms():
  from rr.rewards import incentives

  p, v = incentives.best_expected_reward({"correctness": 1.0, "calibration_brier": 1.0})
  np.testing.assert_allclose(v, p + 1 - 2 * p * (1 - p), atol=1e-12)  # c = p; falls below p = 0.25
  p, v = incentives.best_expected_reward({"calibration": 1.0})
  np.testing.assert_allclose(v, p ** 2, atol=1e-12)  # RLCR alone: p - p(1 - p)
  p, v = incentives.best_expected_reward({"calibration_linear": 1.0, "format": 5.0})
  np.testing.assert_allclose(v, np.maximum(0, 2 * p - 1), atol=1e-12)  # c = 0 below p = 1/2, else 1; format: no p


def test_reward_weights_under_which_reward_falls_with_accuracy_are_refused():
  from rr.train import grpo

  with pytest.raises(ConfigError) as e:
    grpo.build_rewards(_rl("correctness,calibration_brier", "1,1"), None)
  message = str(e.value)
  assert "correctness=1, calibration_brier=1" in message and "accuracy in [0, 0.25]" in message
  assert "'calibration'" in message and "rl.reward_weights=2,1" in message
  with pytest.raises(ConfigError, match=r"calibration_linear=1\): .* accuracy in \[0, 0.5\].*add 'correctness'"):
    grpo.build_rewards(_rl("format,calibration_linear", "0.1,1"), None)
  with pytest.raises(ConfigError, match=r"\(correctness=-1, format=1\).*in \[0, 1\].*rl.reward_weights=0.05,1"):
    grpo.build_rewards(_rl("correctness,format", "-1,1"), None)


@pytest.mark.parametrize("rewards, weights", [
    ("correctness,calibration", "1,1"),  # RLCR: any positive weights
    ("calibration", "1"),
    ("correctness,calibration_brier", "1,0.5"),  # the Brier term at half correctness's weight: V = 0.5 + p^2
    ("correctness,calibration_linear,format", "1,1,0.1"),
    ("format", "1"),  # nothing reads accuracy: nothing to check
    ("correctness,format", "0,1"),  # correctness only as the pass-rate filter's input
])
def test_reward_weights_under_which_reward_rises_with_accuracy_are_accepted(rewards, weights):
  from rr.train import grpo

  fns, _ = grpo.build_rewards(_rl(rewards, weights), None)
  assert len(fns) == len(rewards.split(","))


def test_reward_combine_defaults_to_weighted_sum_and_is_typed():
  config = load_config(os.path.join(ROOT, "configs", "grpo.py"))
  assert config.rl.reward_combine == "weighted_sum"
  apply_overrides(config, [("rl.reward_combine", "gate")])
  assert config.rl.reward_combine == "gate"
