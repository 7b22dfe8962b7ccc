"""The reward registry: the forms `rr.rewards.register` takes, its errors, and a user's reward trained with from
a config file outside the repository."""

import json
import os
import runpy
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rr
from rr import rewards
from rr.config import ConfigError, base_config
from rr.rewards import registry
from rr.tasks import Example
from rr.train import grpo
from rr.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = Example(question="1+2", rationale="1+2+0=03", answer="3")


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
  """Each test registers into a copy of the registry (built-ins included), so its names never leak."""
  monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))  # pylint: disable=protected-access


def _rl(names, weights):
  rl = base_config().rl
  rl.rewards, rl.reward_weights = names, weights
  return rl


def test_row_form_registers_a_per_row_function_and_returns_it_unchanged():
  def shout(prompt, completion, example):
    return sum(ch.isupper() for ch in completion) / len(completion)

  assert rewards.register("shout")(shout) is shout
  assert "shout" in rewards.reward_names() and "correctness" in rewards.reward_names()
  reward = rewards.build_reward("shout", None, None)
  assert isinstance(reward, rewards.RowReward) and reward.name == "shout"
  np.testing.assert_allclose(reward(["p", "p"], ["ABcd", "xyz"], [EXAMPLE] * 2), [0.5, 0.0])
  rewards.unregister("shout")
  assert "shout" not in rewards.reward_names()
  with pytest.raises(rewards.RewardRegistryError, match="no reward 'shout'"):
    rewards.unregister("shout")


def test_factory_form_builds_the_reward_from_this_runs_config():
  @rewards.register("budget", factory=True)
  def make_budget(rl, tokenizer):
    # 1 for completions within half the sampling budget: a reward that must read config.rl.
    return rewards.TokenReward("budget", lambda tokens, mask, params: (mask.sum(axis=1) <= rl.max_new_tokens // 2)
                               * 1.0)

  rl = _rl("correctness,budget", "1,1")
  rl.max_new_tokens = 8
  fns, weights = grpo.build_rewards(rl, tokenizer=None)
  assert [f.name for f in fns] == ["correctness", "budget"]
  mask = np.arange(8)[None, :] < np.array([[3], [6]])  # 3 and 6 sampled tokens
  got, valid, failures = rewards.score_rewards(fns, ["p", "p"], ["<think>x</think>3", "<think>x</think>4"],
                                               [EXAMPLE] * 2, tokens_NxC=np.zeros((2, 8), np.int32), mask_NxC=mask)
  assert valid.all() and not failures
  np.testing.assert_array_equal(got, [[1, 1], [0, 0]])
  rl.max_new_tokens = 12  # a new run's config builds a new reward
  assert float(grpo.build_rewards(rl, None)[0][1](np.zeros((1, 8), np.int32), mask[1:])[0]) == 1.0


def test_a_reward_object_registers_under_its_own_name_only():
  reward = rewards.TokenReward("ids_sum", lambda tokens, mask, params: (tokens * mask).sum(axis=1) * 1.0)
  rewards.register("ids_sum")(reward)
  assert rewards.build_reward("ids_sum", None, None) is reward
  with pytest.raises(rewards.RewardRegistryError, match="got a reward named 'ids_sum'"):
    rewards.register("other")(reward)


def test_a_factory_whose_reward_has_another_name_fails_at_build():
  rewards.register("tidy", factory=True)(lambda rl, tokenizer: rewards.correctness())
  with pytest.raises(ConfigError, match="reward 'tidy' .*built a reward named 'correctness'"):
    grpo.build_rewards(_rl("tidy", "1"), None)


def test_a_name_taken_elsewhere_is_an_error_naming_both_places():
  here = sys._getframe().f_lineno  # pylint: disable=protected-access
  rewards.register("shout")(lambda prompt, completion, example: 1.0)
  with pytest.raises(rewards.RewardRegistryError) as error:
    rewards.register("shout")(lambda prompt, completion, example: 2.0)
  assert f"'shout' is registered twice: at {__file__}:{here + 1} and at {__file__}:{here + 3}" in str(error.value)
  assert rewards.build_reward("shout", None, None)([""], ["x"], [EXAMPLE])[0] == 1.0  # the first one stays
  with pytest.raises(rewards.RewardRegistryError, match=r"'correctness' is registered twice: at .*builtin\.py:\d+"):
    rewards.register("correctness")(lambda prompt, completion, example: 1.0)


def test_the_same_function_or_the_same_file_again_is_a_re_import_not_a_clash(tmp_path):
  def shout(prompt, completion, example):
    return 1.0

  rewards.register("shout")(shout)
  rewards.register("shout")(shout)  # the same object from another line
  module = tmp_path / "reloaded.py"
  module.write_text("import rr.rewards\n\n@rr.rewards.register('loud')\ndef loud(prompt, completion, example):\n"
                    "  return VALUE\n\nVALUE = 1.0\n")
  runpy.run_path(str(module))
  module.write_text(module.read_text().replace("VALUE = 1.0", "VALUE = 2.0"))
  runpy.run_path(str(module))  # a new function object, registered from the same file and line: it replaces
  assert rewards.build_reward("loud", None, None)([""], ["x"], [EXAMPLE])[0] == 2.0


@pytest.mark.parametrize("name", ["", "a,b", "a/b", " shout", 3])
def test_names_config_lists_and_metric_keys_cannot_hold_are_refused(name):
  with pytest.raises(rewards.RewardRegistryError, match="must be a non-empty string"):
    rewards.register(name)


def test_unknown_names_in_rl_rewards_list_the_registered_ones_with_a_hint():
  rewards.register("shout")(lambda prompt, completion, example: 1.0)
  with pytest.raises(ConfigError, match=r"unknown \['shuot'\] \(did you mean 'shout' for 'shuot'\?\); choose from "
                                        r"\[.*'correctness'.*'shout'.*\], or register your own with rr.rewards"):
    grpo.reward_config(_rl("correctness,shuot", "1,1"))
  with pytest.raises(ConfigError, match=r"unknown \['zzzz'\]; choose from"):
    grpo.reward_config(_rl("zzzz", "1"))


def test_user_rewards_do_not_read_accuracy_in_the_incentive_check():
  rewards.register("shout")(lambda prompt, completion, example: 1.0)
  assert grpo.reward_config(_rl("correctness,shout", "1,50"))[0] == ["correctness", "shout"]
  assert grpo.reward_config(_rl("shout", "-3"))[0] == ["shout"]  # reads no accuracy: nothing to refuse
  with pytest.raises(ConfigError, match="does not rise with accuracy"):
    grpo.reward_config(_rl("correctness,shout", "-1,1"))


def test_import_rr_reaches_rr_rewards_without_importing_jax():
  code = ("import sys, rr; assert 'jax' not in sys.modules, 'import rr imported jax'; "
          "print(rr.rewards.register.__module__)")
  result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == "rr.rewards.registry"
  assert rr.rewards is rewards


USER_REWARDS = '''
"""My rewards. SHOUT_LOG (the test's, not a user's need) records every score, to check the metrics against."""
import json
import os

import rr.rewards


@rr.rewards.register("shout")
def shout(prompt, completion, example):
  value = sum(ch.isupper() for ch in completion) / max(len(completion), 1)
  if os.environ.get("SHOUT_LOG"):
    with open(os.environ["SHOUT_LOG"], "a") as f:
      f.write(json.dumps(value) + "\\n")
  return value
'''

USER_CONFIG = '''
"""The repository's GRPO recipe plus my own reward."""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import my_rewards  # registers "shout"
import rr

GRPO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(rr.__file__))), "configs", "grpo.py")


def get_config(arg=None):
  c = runpy.run_path(GRPO)["get_config"](arg)
  c.rl.rewards = "correctness,shout"
  c.rl.reward_weights = "1.0,0.5"
  return c
'''


def test_a_users_reward_from_a_config_file_outside_the_repository_trains_and_logs(tmp_path):
  user = tmp_path / "elsewhere"
  user.mkdir()
  (user / "my_rewards.py").write_text(textwrap.dedent(USER_REWARDS))
  (user / "my_config.py").write_text(textwrap.dedent(USER_CONFIG))
  log, workdir = tmp_path / "shout.jsonl", tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "SHOUT_LOG": str(log)}
  env.pop("XLA_FLAGS", None)
  result = subprocess.run([sys.executable, "-m", "rr.main", "--config", f"{user / 'my_config.py'}:runlocal",
                           "--workdir", str(workdir), "--config.train.eval_every=0", "--config.eval.num_examples=4"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [r for r in read_metrics(str(workdir / "metrics.jsonl")) if "train/rewards/shout/mean" in r]
  assert [r["step"] for r in rows] == list(range(1, 13))
  assert all("train/rewards/shout/std" in r and "train/rewards/correctness/mean" in r for r in rows)
  # Every step scored the same number of completions; each step's mean is the mean of the scores it logged.
  scores = np.array([json.loads(line) for line in log.read_text().splitlines()])
  per_step = scores.reshape(len(rows), -1)
  assert per_step.shape[1] == 8  # runlocal: 2 prompts x 4 completions
  np.testing.assert_allclose([r["train/rewards/shout/mean"] for r in rows], per_step.mean(axis=1), rtol=1e-5)
  assert 0.0 < scores.mean() < 1.0  # an untrained student samples some upper case, never only upper case
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["finished"] and "train/rewards/shout/mean" in summary
