"""Rewards: every built-in and combinator against numbers worked out by hand, and score_rewards on bad rows."""

import jax
import numpy as np
import pytest

from rr import rewards
from rr.tasks import Example, get_task


@pytest.fixture(scope="module")
def example():
  # 865+673=1538, rationale "5+3+0=08\n6+7+0=13\n8+6+1=15"
  ex = get_task("addition").generate(np.random.default_rng(0), 3)
  assert (ex.question, ex.answer) == ("865+673", "1538")
  return ex


GOOD = "<think>5+3+0=08\n6+7+0=13\n8+6+1=15</think>1538"
WRONG = "<think>5+3+0=08\n6+7+0=13\n8+6+0=14</think>1438"  # last step drops the carry: 2 of 3 steps right
BARE = "1538"  # right answer, no think block
EMPTY = "<think>5+3+0=08</think>  "  # one right step, no answer


def call(reward, completions, examples):
  return reward([""] * len(completions), completions, examples)


def test_correctness_format_steps(example):
  completions = [GOOD, WRONG, BARE, EMPTY]
  exs = [example] * 4
  np.testing.assert_allclose(call(rewards.correctness(), completions, exs), [1, 0, 1, 0])
  np.testing.assert_allclose(call(rewards.format_reward(), completions, exs), [1, 1, 0, 0])
  np.testing.assert_allclose(call(rewards.step_correctness(), completions, exs), [1, 2 / 3, 0, 1], rtol=1e-6)
  assert call(rewards.format_reward(), ["<think>a</think>1<think>b</think>2"], [example])[0] == 0


def test_correctness_user_data_and_confidence_line(example):
  user = Example(question="q", rationale="", answer="the  cat")
  out = call(rewards.correctness(), ["<think>x</think> the cat ", "<think>x</think>the dog"], [user, user])
  np.testing.assert_allclose(out, [1, 0])
  assert call(rewards.correctness(), [GOOD + "\nconfidence: 0.8"], [example])[0] == 1
  assert call(rewards.step_correctness(), [GOOD], [user])[0] == 0  # user data has no step checker


def test_length_penalty():
  # target 4, scale 0.5: -0.5 * max(0, L - 4) / 4
  out = call(rewards.length_penalty(4, 0.5), ["a" * 4, "a" * 6, "a" * 12], [None] * 3)
  np.testing.assert_allclose(out, [0, -0.25, -1])


def test_overlong_shaping_three_regimes():
  # Lmax = 10, Lc = 4: soft limit 6
  out = call(rewards.overlong_shaping(10, 4), ["", "a" * 6, "a" * 7, "a" * 10, "a" * 11], [None] * 5)
  np.testing.assert_allclose(out, [0, 0, -0.25, -1, -1])
  tokens = rewards.overlong_shaping(10, 4, length_fn=lambda s: len(s.split()))
  np.testing.assert_allclose(call(tokens, ["w " * 8], [None]), [-0.5])  # (6 - 8) / 4
  with pytest.raises(ValueError):
    rewards.overlong_shaping(4, 5)


def test_calibration_both_modes(example):
  completions = [GOOD + "\nconfidence: 0.8", WRONG + "\nConfidence: 0.8", GOOD + "\nconfidence: 1",
                 GOOD, GOOD + "\nconfidence: 1.5"]
  exs = [example] * 5
  # brier 1 - 2 (correct - c)^2: 1 - 2*0.04, 1 - 2*0.64, 1; unparsable -> -1
  np.testing.assert_allclose(call(rewards.calibration("brier"), completions, exs), [0.92, -0.28, 1, -1, -1],
                             rtol=1e-6)
  np.testing.assert_allclose(call(rewards.calibration("linear"), completions, exs), [0.8, -0.8, 1, -1, -1],
                             rtol=1e-6)
  assert rewards.split_confidence("1538\nconfidence: .25") == ("1538", 0.25)


def test_gate_and_weighted_sum():
  np.testing.assert_allclose(rewards.gate([1, 1, 0], [1, 0, 1], [0.5, 1, 0.25]), [2.5, 1, 1.25])
  np.testing.assert_allclose(jax.jit(rewards.weighted_sum)(np.array([[1, 2], [3, 4]]), np.array([0.5, 2])),
                             [4.5, 9.5])


def test_normalize_then_sum():
  r = np.array([[1, 0], [3, 0], [2, 5], [2, 1]], np.float32)
  # group 1: col 0 [1, 3] -> mean 2, std 1 -> [-1, 1]; col 1 equal -> 0.
  # group 2: col 0 equal -> 0; col 1 [5, 1] -> mean 3, std 2 -> [1, -1], weight 2 -> [2, -2].
  fn = jax.jit(rewards.normalize_then_sum, static_argnums=2)
  np.testing.assert_allclose(fn(r, np.array([1.0, 2.0]), 2), [-1, 1, 2, -2], atol=1e-5)
  # invalid row 2 is left out of its group's mean/std ([1, 3] -> [-1, 1]) and gets 0
  out = rewards.normalize_then_sum(np.array([[1], [3], [100]]), np.array([1.0]), 3,
                                   valid_N=np.array([True, True, False]))
  np.testing.assert_allclose(out, [-1, 1, 0], atol=1e-5)
  with pytest.raises(ValueError, match="group size 3"):
    rewards.normalize_then_sum(r, np.array([1.0, 1.0]), 3)


def test_score_rewards_keeps_good_rows(example):
  def explodes(prompts, completions, examples):
    if "boom" in completions:
      raise RuntimeError("parser choked")
    return np.ones(len(completions))

  def nan_on_wrong(prompts, completions, examples):
    return np.array([np.nan if c == WRONG else 0.5 for c in completions])

  completions = [GOOD, "boom", WRONG, BARE]
  fns = [rewards.correctness(), explodes, nan_on_wrong]
  r, valid, failures = rewards.score_rewards(fns, [""] * 4, completions, [example] * 4)
  np.testing.assert_allclose(r, [[1, 1, 0.5], [0, 0, 0.5], [0, 1, 0], [1, 1, 0.5]])
  np.testing.assert_array_equal(valid, [True, False, False, True])
  assert [(f.reward, f.row) for f in failures] == [("explodes", 1), ("nan_on_wrong", 2)]
  assert "parser choked" in failures[0].error
  metrics = rewards.reward_metrics(fns, r, valid)
  assert metrics["rewards/correctness/mean"] == 1.0 and metrics["rewards/invalid_frac"] == 0.5


def test_token_rewards_are_jitted_over_ids_and_can_carry_params(example):
  tokens = np.array([[7, 7, 3, 1], [7, 2, 1, 0], [5, 1, 0, 0]], np.int32)
  mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
  count_7 = rewards.TokenReward("sevens", lambda t, m, p: jax.numpy.sum((t == 7) & m, axis=1).astype(float))
  # A "model-based" reward: a learned weight per token id, summed over the generated tokens.
  weights = np.zeros(8, np.float32)
  weights[[7, 5, 1]] = [0.5, 2.0, -1.0]
  scored = rewards.TokenReward("weights", lambda t, m, p: jax.numpy.sum(p["w"][t] * m, axis=1), {"w": weights})
  n = len(tokens)
  out, valid, failures = rewards.score_rewards([count_7, scored, rewards.correctness()], ["p"] * n,
                                               [GOOD] * n, [example] * n,
                                               tokens_NxC=tokens, mask_NxC=mask)
  np.testing.assert_allclose(out[:, 0], [2, 1, 0])
  np.testing.assert_allclose(out[:, 1], [0.5 + 0.5 - 1.0, 0.5 - 1.0, 2.0 - 1.0])
  np.testing.assert_allclose(out[:, 2], [1, 1, 1])
  assert valid.all() and not failures


def test_a_failing_or_nan_token_reward_marks_rows_and_keeps_the_rest(example):
  tokens = np.array([[4, 1], [5, 1]], np.int32)
  mask = np.ones((2, 2), bool)
  nan_on_5 = rewards.TokenReward("nan5", lambda t, m, p: jax.numpy.where(t[:, 0] == 5, jax.numpy.nan, 1.0))
  wrong_shape = rewards.TokenReward("bad", lambda t, m, p: jax.numpy.ones((3,)))
  out, valid, failures = rewards.score_rewards([nan_on_5], ["p"] * 2, ["a", "b"], [example] * 2,
                                               tokens_NxC=tokens, mask_NxC=mask)
  np.testing.assert_array_equal(valid, [True, False])
  np.testing.assert_array_equal(out[:, 0], [1.0, 0.0])
  assert [(f.reward, f.row) for f in failures] == [("nan5", 1)]
  out, valid, failures = rewards.score_rewards([rewards.correctness(), wrong_shape], ["p"] * 2, ["a", "b"],
                                               [example] * 2, tokens_NxC=tokens, mask_NxC=mask)
  assert not valid.any() and [f.row for f in failures] == [0, 1] and "shape (3,)" in failures[0].error
  # Without token arrays a token reward cannot run: its rows fail, the call does not raise.
  _, valid, failures = rewards.score_rewards([nan_on_5], ["p"], ["a"], [example])
  assert not valid.any() and "tokens_NxC" in failures[0].error
