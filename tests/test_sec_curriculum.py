"""The SEC prompt source (rr.train.sources "sec"): bandit updates and draws against hand numbers, resume, a run."""

import json
import os
import types

import numpy as np
import pytest

from rr import train
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, apply_overrides, base_config, load_config
from rr.tasks import Example
from rr.train.groups import Groups
from rr.train.sources import make_prompt_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
G = 3  # completions per group


def sec_config(*overrides):
  config = base_config()
  apply_overrides(config, [("rl.prompt_source", "sec"), ("rl.group_size", str(G)), ("rl.prompts_per_step", "4"),
                           ("rl.curriculum_alpha", "0.25"), ("rl.curriculum_temperature", "0.5"), *overrides])
  return config


def examples_by_level(counts: dict) -> list:
  """`counts[level]` questions at each difficulty level, levels interleaved so arms are not index ranges."""
  levels = [level for level, n in counts.items() for _ in range(n)]
  order = np.random.default_rng(0).permutation(len(levels))
  return [Example(f"q{i}", "", "0", difficulty=levels[j]) for i, j in enumerate(order)]


def rollouts(examples, questions, rewards, valid=None):
  """The `rollouts` update() reads: groups of G rows for `questions`, with these combined rewards."""
  rewards_N = np.asarray(rewards, np.float64).reshape(-1)
  valid_N = np.ones(len(rewards_N), bool) if valid is None else np.asarray(valid, bool).reshape(-1)
  rows = [examples[q] for q in questions for _ in range(G)]
  n = len(rows)
  groups = Groups(G, [[1]] * len(questions), rows, np.zeros((n, 1), np.int32), np.ones(n, np.int32),
                  np.zeros((n, 1)), rewards_N[:, None], valid_N, rewards_N, np.zeros(n, bool))
  return types.SimpleNamespace(sampled=groups)


def grpo_abs_advantage(rewards, valid=None):
  """|(r - mean) / (unbiased std + 1e-4)| of each valid row of one group, in numpy."""
  r = np.asarray(rewards, np.float64)[np.ones(len(rewards), bool) if valid is None else np.asarray(valid)]
  return np.abs((r - r.mean()) / (r.std(ddof=1) + 1e-4))


def question_at(examples, level, nth=0):
  return [i for i, e in enumerate(examples) if e.difficulty == level][nth]


def test_q_update_and_arm_probabilities_match_hand_numbers():
  examples = examples_by_level({1: 4, 2: 4, 3: 4})
  source = make_prompt_source(sec_config(), examples)
  np.testing.assert_allclose(source.probabilities(), [1 / 3] * 3)  # Q starts at 0
  alpha, tau = 0.25, 0.5
  # Step 0: level 1 twice (one group with signal, one flat), level 2 once; level 3 not sampled.
  a, b, c = question_at(examples, 1, 0), question_at(examples, 1, 1), question_at(examples, 2)
  source.update(0, rollouts(examples, [a, b, c], [[1, 0, 0], [1, 1, 1], [0, 3, 1]]))
  r1 = np.concatenate([grpo_abs_advantage([1, 0, 0]), [0, 0, 0]]).mean()
  r2 = grpo_abs_advantage([0, 3, 1]).mean()
  q = np.array([alpha * r1, alpha * r2, 0.0])
  np.testing.assert_allclose(source.q_A, q, rtol=1e-5)
  # Step 1: level 2 again, its middle row's reward failed (left out of the group and of the mean); level 1 not
  # sampled keeps its Q.
  source.update(1, rollouts(examples, [c], [[2, 5, 0]], valid=[[True, False, True]]))
  q[1] = alpha * grpo_abs_advantage([2, 5, 0], [True, False, True]).mean() + (1 - alpha) * q[1]
  np.testing.assert_allclose(source.q_A, q, rtol=1e-5)
  assert source.q_A[0] == pytest.approx(alpha * r1, rel=1e-5) and source.q_A[2] == 0.0
  p = np.exp(q / tau) / np.exp(q / tau).sum()
  np.testing.assert_allclose(source.probabilities(), p, rtol=1e-5)
  metrics = source.metrics()
  assert metrics["train/curriculum/p_level_2"] == pytest.approx(p[1], rel=1e-5)
  assert metrics["train/curriculum/q_level_3"] == 0.0


def test_draws_follow_the_arm_probabilities_with_distinct_questions_of_the_arm():
  examples = examples_by_level({1: 3, 2: 6, 4: 6})
  source = make_prompt_source(sec_config(("rl.prompts_per_step", "5")), examples)
  want_p = np.array([0.6, 0.3, 0.1])
  source.q_A = 0.5 * np.log(want_p)  # tau = 0.5: p ∝ exp(Q / tau) = want_p
  counts = np.zeros(3)
  for step in range(2000):
    picked = source.sample(step, 0, 5)
    levels = [examples[i].difficulty for i in picked]
    counts += [levels.count(1), levels.count(2), levels.count(4)]
    if levels.count(1) <= 3:  # level 1 has 3 questions: distinct unless drawn more often than that
      assert len(set(picked)) == 5, picked
    else:
      assert set(i for i in picked if examples[i].difficulty == 1) == {question_at(examples, 1, n) for n in range(3)}
  np.testing.assert_allclose(counts / counts.sum(), want_p, atol=0.015)
  np.testing.assert_array_equal(source.sample(7, 1, 5), source.sample(7, 1, 5))  # a function of (step, round)


def test_state_dict_round_trip_continues_with_identical_draws():
  examples = examples_by_level({1: 5, 2: 5, 3: 5})
  config = sec_config(("rl.curriculum_temperature", "0.05"))
  source = make_prompt_source(config, examples)
  source.update(0, rollouts(examples, [question_at(examples, 1)], [[1, 0, 0]]))
  source.update(1, rollouts(examples, [question_at(examples, 3)], [[4, 0, 1]]))
  resumed = make_prompt_source(config, examples)
  resumed.load_state_dict(json.loads(json.dumps(source.state_dict())))  # as the checkpoint's JSON record holds it
  np.testing.assert_array_equal(resumed.q_A, source.q_A)
  draws = [source.sample(2, r, 4) for r in range(3)]
  for r in range(3):
    np.testing.assert_array_equal(resumed.sample(2, r, 4), draws[r])
  fresh = make_prompt_source(config, examples)  # the state matters: Q = 0 draws otherwise
  assert any(not np.array_equal(fresh.sample(2, r, 4), draws[r]) for r in range(3))
  with pytest.raises(ConfigError, match="difficulty levels \\[1, 2, 3\\].*have \\[1, 2\\]"):
    make_prompt_source(config, examples_by_level({1: 5, 2: 5})).load_state_dict(source.state_dict())


def test_one_level_draws_distinct_questions_and_bad_settings_name_the_key():
  examples = examples_by_level({0: 6})  # user data: difficulty 0 everywhere
  source = make_prompt_source(sec_config(("rl.prompts_per_step", "6")), examples)
  assert sorted(source.sample(0, 0, 6)) == list(range(6))
  with pytest.raises(ConfigError, match="rl.advantage='ppo' does not compute"):
    make_prompt_source(sec_config(("rl.advantage", "ppo")), examples)
  for key, value in (("rl.curriculum_alpha", "0.0"), ("rl.curriculum_alpha", "1.5"),
                     ("rl.curriculum_temperature", "0.0")):
    with pytest.raises(ConfigError, match=f"config\\.{key}={value} must be"):
      apply_overrides(load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal"), [(key, value)])


def test_grpo_run_with_the_sec_source_checkpoints_its_curriculum(tmp_path, length_reward):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, [("rl.prompt_source", "sec"), ("data.difficulty", "1"), ("data.difficulty_max", "3"),
                           ("data.train_size", "24"), ("rl.rewards", "length"), ("rl.reward_weights", "1.0"),
                           ("train.steps", "2"), ("train.eval_every", "0"), ("eval.num_examples", "0"),
                           ("rl.kl_beta", "0.0")])
  workdir = str(tmp_path / "sec")
  summary = train.run(config, workdir)
  assert summary["finished"] and summary["step"] == 2
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), read_only=True)
  q = checkpoints.read_record(checkpoints.latest_step())["data_state"]["prompt_source"]["q"]
  assert sorted(q) == ["1", "2", "3"]
  # The length reward varies inside every group, so each level a step sampled has Q > 0 (2 steps x 2 prompts).
  assert 1 <= sum(v > 0 for v in q.values()) <= 3 and all(v >= 0 for v in q.values())
  # The loop logs the curriculum with each step: the logged Q of the last step is the checkpoint's.
  from rr.train.metrics import read_metrics

  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  last = [row for row in rows if "train/curriculum/q_level_1" in row][-1]
  assert last["step"] == 2
  assert [last[f"train/curriculum/q_level_{d}"] for d in (1, 2, 3)] == pytest.approx([q[str(d)] for d in (1, 2, 3)])
  assert sum(last[f"train/curriculum/p_level_{d}"] for d in (1, 2, 3)) == pytest.approx(1.0)
