"""Advantage estimators against group statistics worked out by hand, failed rewards, GAE vs a plain loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.errors import UserError
from rr.rewards import compute_advantages, gae

# Two groups of 4: [1, 0, 0, 1] (mean 0.5) and [1, 1, 1, 0] (mean 0.75).
REWARDS = np.array([1, 0, 0, 1, 1, 1, 1, 0], np.float32)


def _adv(name, rewards=REWARDS, group_size=4, **kw):
  return np.asarray(compute_advantages(name, jnp.asarray(rewards), group_size, **kw))


def test_grpo_group_std_unbiased():
  # Group 0: deviations +-0.5, unbiased var = 4 * 0.25 / 3 = 1/3.
  # Group 1: deviations [0.25, 0.25, 0.25, -0.75], var = (3 * 0.0625 + 0.5625) / 3 = 0.25, std 0.5.
  s0, s1 = math.sqrt(1 / 3), 0.5
  want = [0.5 / (s0 + 1e-4), -0.5 / (s0 + 1e-4), -0.5 / (s0 + 1e-4), 0.5 / (s0 + 1e-4),
          0.25 / (s1 + 1e-4), 0.25 / (s1 + 1e-4), 0.25 / (s1 + 1e-4), -0.75 / (s1 + 1e-4)]
  np.testing.assert_allclose(_adv("grpo"), want, rtol=1e-5)


def test_grpo_batch_scale_uses_batch_std():
  # Batch of 8 with five ones: mean 5/8, unbiased var = (5 * (3/8)^2 + 3 * (5/8)^2) / 7.
  std = math.sqrt((5 * (3 / 8) ** 2 + 3 * (5 / 8) ** 2) / 7)
  dev = [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75]
  np.testing.assert_allclose(_adv("grpo", scale="batch"), [d / (std + 1e-4) for d in dev], rtol=1e-5)


def test_grpo_equal_rewards_give_zero():
  np.testing.assert_allclose(_adv("grpo", rewards=np.ones(4, np.float32)), np.zeros(4), atol=0)


def test_drgrpo_is_mean_centred_without_std():
  np.testing.assert_allclose(_adv("drgrpo"), [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75], rtol=1e-6)


def test_rloo_leaves_self_out_of_the_baseline():
  # Group 0: 1 - (0+0+1)/3 = 2/3, 0 - (1+0+1)/3 = -2/3.  Group 1: 1 - (1+1+0)/3 = 1/3, 0 - 3/3 = -1.
  want = [2 / 3, -2 / 3, -2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, -1.0]
  np.testing.assert_allclose(_adv("rloo"), want, rtol=1e-6)


def test_reinforce_pp_normalises_over_the_batch():
  x = [0.5, -0.5, -0.5, 0.5, 0.25, 0.25, 0.25, -0.75]  # r - group mean
  mean = sum(x) / 8  # 0
  std = math.sqrt(sum((v - mean) ** 2 for v in x) / 7)
  np.testing.assert_allclose(_adv("reinforce++"), [(v - mean) / (std + 1e-4) for v in x], rtol=1e-5,
                             atol=1e-7)


def test_nan_reward_rows_get_zero_advantage_and_leave_the_statistics():
  rewards = np.array([1.0, np.nan, 0.0, 1.0], np.float32)
  # GRPO on the valid [1, 0, 1]: mean 2/3, unbiased var = ((1/3)^2 * 2 + (2/3)^2) / 2 = 1/3.
  s = math.sqrt(1 / 3)
  want = [(1 / 3) / (s + 1e-4), 0.0, (-2 / 3) / (s + 1e-4), (1 / 3) / (s + 1e-4)]
  np.testing.assert_allclose(_adv("grpo", rewards=rewards), want, rtol=1e-5)
  # RLOO: 1 - (0+1)/2, 0 - (1+1)/2, 1 - (1+0)/2.
  np.testing.assert_allclose(_adv("rloo", rewards=rewards), [0.5, 0.0, -1.0, 0.5], rtol=1e-6)
  for name in ("drgrpo", "reinforce++"):
    adv = _adv(name, rewards=rewards)
    assert adv[1] == 0.0 and np.all(np.isfinite(adv))
  # The same through valid_B with a finite placeholder reward.
  masked = _adv("grpo", rewards=np.array([1.0, 55.0, 0.0, 1.0], np.float32),
                valid_B=jnp.asarray([True, False, True, True]))
  np.testing.assert_allclose(masked, _adv("grpo", rewards=rewards), rtol=1e-6)


def test_a_lone_valid_row_gets_zero():
  rewards = np.array([1.0, np.nan, np.nan, np.nan], np.float32)
  for name in ("grpo", "drgrpo", "rloo", "reinforce++"):
    np.testing.assert_array_equal(_adv(name, rewards=rewards), np.zeros(4))


def test_batch_not_divisible_by_group_names_both_numbers():
  with pytest.raises(ValueError, match=r"batch size 6 .*group size 4") as err:
    _adv("grpo", rewards=np.zeros(6, np.float32), group_size=4)
  assert isinstance(err.value, UserError)
  with pytest.raises(ValueError, match="grpo"):
    _adv("ppo")


def test_compute_advantages_jits_with_static_name_and_group():
  f = jax.jit(compute_advantages, static_argnums=(0, 2))
  np.testing.assert_allclose(f("rloo", jnp.asarray(REWARDS), 4), _adv("rloo"), rtol=1e-6)


def _gae_by_hand(rewards, values, lengths, gamma, lam):
  adv = np.zeros_like(rewards)
  for b, n in enumerate(lengths):
    next_adv = 0.0
    for t in reversed(range(n)):
      next_v = values[b, t + 1] if t + 1 < n else 0.0
      delta = rewards[b, t] + gamma * next_v - values[b, t]
      next_adv = delta + gamma * lam * next_adv
      adv[b, t] = next_adv
  return adv


def test_gae_matches_a_hand_loop():
  rewards = np.array([[0.0, 0.5, 1.0, 9.0], [0.2, -1.0, 9.0, 9.0]], np.float32)
  values = np.array([[0.3, 0.1, 0.7, 9.0], [0.5, 0.4, 9.0, 9.0]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
  adv, ret = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), 0.9, 0.8)
  want = _gae_by_hand(rewards, values, [3, 2], 0.9, 0.8)
  np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(ret, (want + values) * mask, rtol=1e-5, atol=1e-7)


def test_gae_with_gamma_lambda_one_is_return_to_go_minus_value():
  rewards = np.array([[1.0, 2.0, 3.0]], np.float32)
  values = np.array([[0.5, 0.25, 1.0]], np.float32)
  adv, ret = gae(jnp.asarray(rewards), jnp.asarray(values), jnp.ones((1, 3)), 1.0, 1.0)
  np.testing.assert_allclose(adv, [[6 - 0.5, 5 - 0.25, 3 - 1.0]], rtol=1e-6)
  np.testing.assert_allclose(ret, [[6.0, 5.0, 3.0]], rtol=1e-6)
