"""The policy loss, each option against numbers worked out by hand here, and GPPO's gradient."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.losses import PolicyLossConfig, policy_loss, sequence_kl, token_entropy, value_loss

# Two rows with the same ratios rho = [1.5, 0.5, 1.1] (old log-probs 0), advantages +1 and -1.
RHO = [1.5, 0.5, 1.1]
LOGP = np.log(np.array([RHO, RHO], np.float32))
OLD = np.zeros((2, 3), np.float32)
ADV = np.array([1.0, -1.0], np.float32)
MASK = np.ones((2, 3), np.float32)
DAPO_CLIP = dict(eps_low=0.2, eps_high=0.28, aggregation="token-mean")


def _loss_and_grad(cfg, logp, old, adv, mask, **kw):
  def f(lp):
    return policy_loss(lp, jnp.asarray(old), jnp.asarray(adv), jnp.asarray(mask), cfg, **kw)
  (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(logp))
  return float(loss), metrics, np.asarray(grad)


def test_mu_one_loss_reads_minus_mean_advantage_but_gradient_is_minus_a_grad_logp():
  logp = np.array([[-1.0, -2.0], [-0.5, -3.0]], np.float32)
  adv = np.array([2.0, -1.0], np.float32)
  mask = np.array([[1, 1], [1, 0]], np.float32)
  for aggregation, want_grad in (
      # seq-mean-token-mean: -A_i * m / n_i / B
      ("seq-mean-token-mean", [[-2 / 2 / 2, -2 / 2 / 2], [1 / 1 / 2, 0.0]]),
      # token-mean: -A_i * m / (number of active tokens = 3)
      ("token-mean", [[-2 / 3, -2 / 3], [1 / 3, 0.0]])):
    cfg = PolicyLossConfig(aggregation=aggregation)

    def f(lp):
      return policy_loss(lp, jax.lax.stop_gradient(lp), jnp.asarray(adv), jnp.asarray(mask), cfg)
    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(logp))
    want_loss = -(2 - 1) / 2 if aggregation == "seq-mean-token-mean" else -(2 + 2 - 1) / 3
    assert float(loss) == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6)
    assert float(metrics["ratio_mean"]) == pytest.approx(1.0)
    assert float(metrics["clip_ratio/region_mean"]) == 0.0


def test_clip_higher_values_and_clip_fractions():
  loss, m, _ = _loss_and_grad(PolicyLossConfig(**DAPO_CLIP), LOGP, OLD, ADV, MASK)
  # A=+1: -min(rho, clip(rho, 0.8, 1.28)) = -[1.28, 0.5, 1.1]
  # A=-1: -min(-rho, -clip) = max(rho, clip) = [1.5, 0.8, 1.1]
  row0 = -(1.28 + 0.5 + 1.1)
  row1 = 1.5 + 0.8 + 1.1
  assert loss == pytest.approx((row0 + row1) / 6, rel=1e-5)
  assert float(m["pg_loss"]) == pytest.approx((row0 + row1) / 6, rel=1e-5)
  assert float(m["clip_ratio/high_mean"]) == pytest.approx(1 / 6)  # row 0, rho 1.5 > 1.28 with A > 0
  assert float(m["clip_ratio/low_mean"]) == pytest.approx(1 / 6)  # row 1, rho 0.5 < 0.8 with A < 0
  assert float(m["clip_ratio/region_mean"]) == pytest.approx(2 / 6)
  assert float(m["ratio_mean"]) == pytest.approx((1.5 + 0.5 + 1.1) / 3, rel=1e-6)


def test_standard_clip_gives_zero_gradient_on_clipped_tokens():
  _, _, grad = _loss_and_grad(PolicyLossConfig(**DAPO_CLIP), LOGP, OLD, ADV, MASK)
  # d(-rho*A)/dlogp = -rho*A on unclipped tokens, 0 where the clipped branch is taken; token-mean over 6.
  want = np.array([[0.0, -0.5, -1.1], [1.5, 0.0, 1.1]]) / 6
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)


def test_gppo_keeps_forward_value_and_gives_one_plus_minus_eps_times_a_gradient():
  clip_loss, _, _ = _loss_and_grad(PolicyLossConfig(**DAPO_CLIP), LOGP, OLD, ADV, MASK)
  loss, m, grad = _loss_and_grad(PolicyLossConfig(clip_mode="gppo", **DAPO_CLIP), LOGP, OLD, ADV, MASK)
  assert loss == pytest.approx(clip_loss, rel=1e-6)
  # Clipped tokens: gradient of the loss = -(1 + eps_high) * A * grad logp and -(1 - eps_low) * A * grad logp.
  high = -(1 + 0.28) * 1.0 / 6
  low = -(1 - 0.2) * -1.0 / 6
  assert grad[0, 0] == pytest.approx(high, rel=1e-5) and grad[0, 0] != 0.0
  assert grad[1, 1] == pytest.approx(low, rel=1e-5) and grad[1, 1] != 0.0
  want = np.array([[high, -0.5 / 6, -1.1 / 6], [1.5 / 6, low, 1.1 / 6]])
  np.testing.assert_allclose(grad, want, rtol=1e-5)
  assert float(m["clip_ratio/high_mean"]) == pytest.approx(1 / 6)


def test_per_token_advantages_clip_and_weigh_each_token_on_its_own():
  # One row, rho = [1.5, 0.5, 1.1], A_t = [1, -1, 2] (PPO's GAE gives one advantage per token), eps 0.2.
  logp = np.log(np.array([RHO], np.float32))
  adv = np.array([[1.0, -1.0, 2.0]], np.float32)
  cfg = PolicyLossConfig(aggregation="token-mean")
  loss, m, grad = _loss_and_grad(cfg, logp, np.zeros((1, 3), np.float32), adv, np.ones((1, 3), np.float32))
  # -min(rho*A, clip(rho)*A): -min(1.5, 1.2) = -1.2; -min(-0.5, -0.8) = 0.8; -min(2.2, 2.2) = -2.2.
  assert loss == pytest.approx((-1.2 + 0.8 - 2.2) / 3, rel=1e-6)
  assert float(m["clip_ratio/high_mean"]) == pytest.approx(1 / 3)
  assert float(m["clip_ratio/low_mean"]) == pytest.approx(1 / 3)
  # Tokens 0 and 1 take the clipped branch (no gradient); token 2: -A * rho / 3.
  np.testing.assert_allclose(grad, [[0.0, 0.0, -2.0 * 1.1 / 3]], rtol=1e-5, atol=1e-7)
  # A per-token advantage that is constant along each row is the per-sequence one.
  per_seq, _, _ = _loss_and_grad(cfg, LOGP, OLD, ADV, MASK)
  per_tok, _, _ = _loss_and_grad(cfg, LOGP, OLD, np.repeat(ADV[:, None], 3, axis=1), MASK)
  assert per_tok == pytest.approx(per_seq, rel=1e-6)


def test_dual_clip_caps_the_loss_of_negative_advantage_tokens():
  # rho = [5, 2]; A = -1 on row 0, +1 on row 1.
  logp = np.log(np.array([[5.0, 2.0], [5.0, 2.0]], np.float32))
  old = np.zeros((2, 2), np.float32)
  adv = np.array([-1.0, 1.0], np.float32)
  mask = np.ones((2, 2), np.float32)
  cfg = PolicyLossConfig(dual_clip_c=3.0, aggregation="token-mean")
  loss, _, grad = _loss_and_grad(cfg, logp, old, adv, mask)
  # Row 0: max(rho, 1.2) = [5, 2], capped at c*|A| = 3 -> [3, 2]. Row 1: -min(rho, 1.2) = [-1.2, -1.2].
  assert loss == pytest.approx((3 + 2 - 1.2 - 1.2) / 4, rel=1e-6)
  assert grad[0, 0] == 0.0  # the capped token is constant
  assert grad[0, 1] == pytest.approx(2.0 / 4, rel=1e-6)
  no_cap, _, _ = _loss_and_grad(PolicyLossConfig(aggregation="token-mean"), logp, old, adv, mask)
  assert no_cap == pytest.approx((5 + 2 - 1.2 - 1.2) / 4, rel=1e-6)


@pytest.mark.parametrize("aggregation,max_len,want", [
    ("seq-mean-token-mean", None, ((-(1.0 + 1.2 + 0.8) / 3) + -0.5) / 2),
    ("token-mean", None, -(1.0 + 1.2 + 0.8 + 0.5) / 4),
    ("seq-mean-token-sum-norm", None, -(1.0 + 1.2 + 0.8 + 0.5) / (2 * 3)),
    ("seq-mean-token-sum-norm", 5, -(1.0 + 1.2 + 0.8 + 0.5) / (2 * 5)),
])
def test_aggregations(aggregation, max_len, want):
  # A = 1 and no clip, so the per-token loss is -rho; row 1 has one active token.
  logp = np.log(np.array([[1.0, 1.2, 0.8], [0.5, 7.0, 7.0]], np.float32))
  mask = np.array([[1, 1, 1], [1, 0, 0]], np.float32)
  cfg = PolicyLossConfig(eps_low=0.9, eps_high=10.0, aggregation=aggregation, max_completion_len=max_len)
  loss, _, _ = _loss_and_grad(cfg, logp, np.zeros((2, 3), np.float32), np.ones(2, np.float32), mask)
  assert loss == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_estimators_added_per_token(estimator):
  logp = np.array([[-1.0, -2.0]], np.float32)
  ref = np.array([[-1.5, -1.0]], np.float32)
  # logp - ref = [0.5, -1]; ref - logp = [-0.5, 1]
  want_k = {"k1": [0.5, -1.0],
            "k2": [0.5 * 0.25, 0.5 * 1.0],
            "k3": [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1 - 1]}[estimator]
  cfg = PolicyLossConfig(kl_beta=0.1, kl_estimator=estimator, aggregation="token-mean")
  # A = 0 makes the surrogate 0, so the loss is beta * mean(k).
  loss, m, _ = _loss_and_grad(cfg, logp, logp, np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                              ref_logp_BxT=jnp.asarray(ref))
  assert loss == pytest.approx(0.1 * sum(want_k) / 2, rel=1e-5, abs=1e-7)
  assert float(m["kl"]) == pytest.approx(sum(want_k) / 2, rel=1e-5, abs=1e-7)
  assert float(m["pg_loss"]) == 0.0


def test_kl_beta_without_reference_and_entropy_coef_without_entropy_are_errors():
  args = (jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros(1), jnp.ones((1, 2)))
  with pytest.raises(ValueError, match="ref_logp"):
    policy_loss(*args, PolicyLossConfig(kl_beta=0.1))
  with pytest.raises(ValueError, match="entropy_BxT"):
    policy_loss(*args, PolicyLossConfig(entropy_coef=0.01))
  with pytest.raises(ValueError, match="has_eos_B"):
    policy_loss(*args, PolicyLossConfig(mask_truncated=True))
  with pytest.raises(ValueError, match="aggregation"):
    PolicyLossConfig(aggregation="sum")
  with pytest.raises(ValueError, match="ratio_level"):
    PolicyLossConfig(ratio_level="word")


def test_entropy_bonus_and_token_entropy():
  entropy = np.array([[1.0, 2.0]], np.float32)
  cfg = PolicyLossConfig(entropy_coef=0.01, aggregation="token-mean")
  zeros = np.zeros((1, 2), np.float32)
  loss, m, _ = _loss_and_grad(cfg, zeros, zeros, np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                              entropy_BxT=jnp.asarray(entropy))
  assert loss == pytest.approx(-0.01 * 1.5, rel=1e-6)
  assert float(m["entropy"]) == pytest.approx(1.5)
  # Uniform over 4 -> log 4; the -1e9 entry has probability 0 and contributes nothing.
  logits = np.array([[[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, -1e9]]], np.float32)
  z = math.exp(1) + math.exp(2) + 1
  p = [math.exp(1) / z, math.exp(2) / z, 1 / z]
  want = [math.log(4), -sum(q * math.log(q) for q in p)]
  np.testing.assert_allclose(token_entropy(jnp.asarray(logits))[0], want, rtol=1e-5)


def test_mask_truncated_drops_rows_without_eos():
  logp = np.zeros((2, 2), np.float32)
  adv = np.array([1.0, -1.0], np.float32)
  mask = np.ones((2, 2), np.float32)
  has_eos = jnp.asarray([True, False])
  on, _, grad = _loss_and_grad(PolicyLossConfig(mask_truncated=True, aggregation="token-mean"),
                               logp, logp, adv, mask, has_eos_B=has_eos)
  assert on == pytest.approx(-1.0)  # only row 0: -A = -1 on its 2 tokens
  np.testing.assert_array_equal(grad[1], [0.0, 0.0])
  off, _, _ = _loss_and_grad(PolicyLossConfig(aggregation="token-mean"), logp, logp, adv, mask,
                             has_eos_B=has_eos)
  assert off == pytest.approx(0.0)


def test_gspo_sequence_ratio_value_clip_and_gradient():
  # Row 0: logp - old = [0.2, 0.4, (5, masked)] -> s0 = exp(0.3); row 1: [0.1, -0.1, 0.3] -> s1 = exp(0.1).
  logp = np.array([[0.2, 0.4, 5.0], [0.1, -0.1, 0.3]], np.float32)
  old = np.zeros((2, 3), np.float32)
  mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  adv = np.ones(2, np.float32)
  s0, s1 = math.exp(0.3), math.exp(0.1)
  wide = PolicyLossConfig(ratio_level="sequence", eps_low=0.9, eps_high=10.0)
  loss, m, grad = _loss_and_grad(wide, logp, old, adv, mask)
  assert loss == pytest.approx(-(s0 + s1) / 2, rel=1e-6)
  assert float(m["ratio_mean"]) == pytest.approx((2 * s0 + 3 * s1) / 5, rel=1e-6)
  # GSPO: d s_i / d logp_t = s_i * m_t / n_i; loss = -(s0 + s1) / 2.
  want = [[-s0 / 2 / 2, -s0 / 2 / 2, 0.0], [-s1 / 3 / 2] * 3]
  np.testing.assert_allclose(grad, want, rtol=1e-6)
  # eps 0.2: s0 = 1.35 > 1.2 is clipped for the whole sequence, s1 = 1.105 is not.
  loss, m, grad = _loss_and_grad(PolicyLossConfig(ratio_level="sequence"), logp, old, adv, mask)
  assert loss == pytest.approx(-(1.2 + s1) / 2, rel=1e-6)
  np.testing.assert_array_equal(grad[0], [0.0, 0.0, 0.0])
  assert float(m["clip_ratio/high_mean"]) == pytest.approx(2 / 5)


def test_policy_loss_jits():
  cfg = PolicyLossConfig(clip_mode="gppo", ratio_level="sequence", dual_clip_c=3.0, kl_beta=0.05)
  f = jax.jit(lambda lp, old, a, m, ref: policy_loss(lp, old, a, m, cfg, ref_logp_BxT=ref))
  loss, metrics = f(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones(2), jnp.ones((2, 3)), jnp.zeros((2, 3)))
  assert float(loss) == pytest.approx(-1.0)
  assert set(metrics) == {"pg_loss", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean",
                          "ratio_mean"}


def test_clipped_value_loss():
  values = np.array([[1.0, 2.0, 0.0]], np.float32)
  old = np.array([[0.5, 2.1, 9.0]], np.float32)
  returns = np.array([[2.0, 1.0, 7.0]], np.float32)
  mask = np.array([[1, 1, 0]], np.float32)
  # Token 0: (1-2)^2 = 1; clipped 0.5+0.2 = 0.7 -> (0.7-2)^2 = 1.69 -> 1.69 (clip binds).
  # Token 1: (2-1)^2 = 1; clipped 2.1-0.1 = 2.0 -> 1 -> 1.0.  Token 2 masked.
  loss, m = value_loss(*map(jnp.asarray, (values, returns, old, mask)), clip_eps=0.2)
  assert float(loss) == pytest.approx(0.5 * (1.69 + 1.0) / 2, rel=1e-5)
  assert float(m["value_clip_frac"]) == pytest.approx(0.5)


# Each clip bound on its own row, with eps_low != eps_high, so swapping them changes a value or a gradient.
# One token, token-mean: the loss is -min(rho*A, clip(rho)*A); its gradient in logp is -rho*A unclipped,
# 0 when the clip binds ("clip") or -(1 +- eps)*A ("gppo"). Bounds 1 - 0.2 = 0.8 and 1 + 0.28 = 1.28.
@pytest.mark.parametrize("clip_mode", ["clip", "gppo"])
@pytest.mark.parametrize("rho, adv, value, bound, clipped_low, clipped_high", [
    (1.25, 1.0, -1.25, None, 0, 0),  # inside (1.2, 1.28): a swapped upper bound (1.2) would clip it
    (1.40, 1.0, -1.28, 1.28, 0, 1),  # above 1.28: clipped by eps_high
    (0.75, -1.0, 0.80, 0.80, 1, 0),  # inside (0.72, 0.8): clipped by eps_low; swapped (0.72) would not
    (0.60, -1.0, 0.80, 0.80, 1, 0),
    (0.75, 1.0, -0.75, None, 0, 0),  # A > 0 below the lower bound: min() keeps the unclipped term
    (1.25, -1.0, 1.25, None, 0, 0),  # A < 0 inside the upper bound: unclipped
])
def test_each_clip_bound_on_its_own_row(clip_mode, rho, adv, value, bound, clipped_low, clipped_high):
  cfg = PolicyLossConfig(clip_mode=clip_mode, **DAPO_CLIP)
  logp = np.log(np.array([[rho]], np.float32))
  loss, m, grad = _loss_and_grad(cfg, logp, np.zeros((1, 1), np.float32), np.array([adv], np.float32),
                                 np.ones((1, 1), np.float32))
  assert loss == pytest.approx(value, rel=1e-6)
  if bound is None:
    want_grad = -rho * adv
  else:
    want_grad = 0.0 if clip_mode == "clip" else -bound * adv
  assert float(grad[0, 0]) == pytest.approx(want_grad, rel=1e-5, abs=1e-8)
  assert float(m["clip_ratio/low_mean"]) == clipped_low and float(m["clip_ratio/high_mean"]) == clipped_high


LOGP_KL = np.array([[-1.0, -2.0]], np.float32)
REF_KL = np.array([[-1.5, -1.0]], np.float32)  # logp - ref = [0.5, -1]


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_loss_mode_gradient_is_the_estimators_derivative(estimator):
  # "loss" mode differentiates beta * mean_t k(logp_t): k1' = 1, k2' = logp - ref, k3' = 1 - exp(ref - logp).
  # A stop_gradient on logp inside the KL term makes these 0.
  d = LOGP_KL - REF_KL
  want = {"k1": np.ones_like(d), "k2": d, "k3": 1.0 - np.exp(-d)}[estimator]
  cfg = PolicyLossConfig(kl_beta=0.1, kl_estimator=estimator, kl_mode="loss", aggregation="token-mean")
  _, _, grad = _loss_and_grad(cfg, LOGP_KL, LOGP_KL, np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                              ref_logp_BxT=jnp.asarray(REF_KL))
  np.testing.assert_allclose(grad, 0.1 * want / 2, rtol=1e-5)
  assert np.abs(grad).min() > 0


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_gradient_mode_weights_each_token_by_the_future_log_ratio(estimator):
  # Score function times reward-to-go: R_t = sum_{t' >= t} (logp - ref) = [0.5 - 1, -1] = [-0.5, -1], whatever
  # the estimator (it only sets the value). rho = 1 (old = logp); token-mean over 2 tokens.
  cfg = PolicyLossConfig(kl_beta=0.1, kl_estimator=estimator, aggregation="token-mean")
  assert cfg.kl_mode == "gradient"  # the default
  loss, m, grad = _loss_and_grad(cfg, LOGP_KL, LOGP_KL, np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                                 ref_logp_BxT=jnp.asarray(REF_KL))
  np.testing.assert_allclose(grad, 0.1 * np.array([[-0.5, -1.0]]) / 2, rtol=1e-5)
  # The value is the estimator's, as in "loss" mode.
  loss_mode, _, _ = _loss_and_grad(dataclasses.replace(cfg, kl_mode="loss"), LOGP_KL, LOGP_KL,
                                   np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                                   ref_logp_BxT=jnp.asarray(REF_KL))
  assert loss == pytest.approx(loss_mode, rel=1e-6) and loss == pytest.approx(0.1 * float(m["kl"]), rel=1e-6)


def test_kl_gradient_mode_off_policy_weighs_by_the_token_ratio():
  # mu > 1: old != logp, rho = exp(logp - old) = [2, 0.5]; the gradient is rho_t * R_t (unclipped, since
  # the ratio corrects the sampling distribution rather than limiting the step).
  old = LOGP_KL - np.log(np.array([[2.0, 0.5]], np.float32))
  cfg = PolicyLossConfig(kl_beta=0.1, aggregation="token-mean")
  _, _, grad = _loss_and_grad(cfg, LOGP_KL, old, np.zeros(1, np.float32), np.ones((1, 2), np.float32),
                              ref_logp_BxT=jnp.asarray(REF_KL))
  np.testing.assert_allclose(grad, 0.1 * np.array([[2.0 * -0.5, 0.5 * -1.0]]) / 2, rtol=1e-5)


@pytest.mark.parametrize("kl_mode", ["gradient", "loss"])
@pytest.mark.parametrize("aggregation", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_overflow_at_a_padding_column_changes_nothing(kl_mode, aggregation):
  # Column 2 is padding. There, ref - logp = 200 (k3's exp overflows float32) and logp - old = 200 (the
  # ratio's exp overflows); the result must be finite and equal to the same batch with zeros there.
  mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  logp = np.array([[-1.0, -2.0, -100.0], [-0.5, -1.5, -0.7]], np.float32)
  old = np.array([[-1.1, -1.8, -300.0], [-0.4, -1.5, -0.9]], np.float32)
  ref = np.array([[-1.5, -1.0, 100.0], [-0.6, -1.2, -0.8]], np.float32)
  entropy = np.array([[1.0, 2.0, np.inf], [0.5, 0.4, 0.3]], np.float32)
  clean = [x.copy() for x in (logp, old, ref, entropy)]
  for x in clean:
    x[0, 2] = 0.0
  cfg = PolicyLossConfig(kl_beta=0.1, kl_estimator="k3", kl_mode=kl_mode, aggregation=aggregation,
                         entropy_coef=0.01, clip_mode="gppo", dual_clip_c=3.0)
  adv = np.array([1.0, -1.0], np.float32)
  got = _loss_and_grad(cfg, logp, old, adv, mask, ref_logp_BxT=jnp.asarray(ref), entropy_BxT=jnp.asarray(entropy))
  want = _loss_and_grad(cfg, clean[0], clean[1], adv, mask, ref_logp_BxT=jnp.asarray(clean[2]),
                        entropy_BxT=jnp.asarray(clean[3]))
  assert np.isfinite(got[0]) and np.all(np.isfinite(got[2]))
  assert got[0] == pytest.approx(want[0], rel=1e-6)
  np.testing.assert_allclose(got[2], want[2], rtol=1e-6)
  for key, value in want[1].items():
    assert float(got[1][key]) == pytest.approx(float(value), rel=1e-6), key


def test_kl_reward_mode_logs_the_kl_but_adds_no_term():
  """kl_mode="reward" puts the penalty in the advantages (rr.train.advantages), so the loss and its gradient are
  the surrogate's alone; the estimator is still logged, and sequence_kl is the per-row sum of k1."""
  ref = np.array([[-0.2, -0.9, 0.3], [0.0, 0.1, -0.4]], np.float32)
  mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  plain = _loss_and_grad(PolicyLossConfig(), LOGP, OLD, ADV, mask)
  reward = _loss_and_grad(PolicyLossConfig(kl_beta=0.5, kl_mode="reward", kl_estimator="k1"), LOGP, OLD, ADV, mask,
                          ref_logp_BxT=jnp.asarray(ref))
  assert reward[0] == pytest.approx(plain[0])
  np.testing.assert_allclose(reward[2], plain[2], rtol=1e-6)
  k1 = (LOGP - ref) * mask
  assert float(reward[1]["kl"]) == pytest.approx(k1.sum() / mask.sum(), rel=1e-5)
  np.testing.assert_allclose(np.asarray(sequence_kl(jnp.asarray(LOGP), jnp.asarray(ref), jnp.asarray(mask), "k1")),
                             k1.sum(-1), rtol=1e-5)
