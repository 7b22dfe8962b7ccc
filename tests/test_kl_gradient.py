"""The KL term's gradient against the exact KL of a tabular policy small enough to enumerate (2506.09477).

A policy over V = 3 tokens whose next-token logits depend on (position, previous token) has V^T sequences
of length T; KL(pi || pi_ref) = sum_y pi(y) log(pi(y) / pi_ref(y)) is then exact and jax.grad
differentiates it. The loss's KL term, evaluated on every sequence and weighted by sg(pi(y)) (the
expectation over y ~ pi written out), must have exactly that gradient, scaled by the aggregation's
per-token weight.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.losses import PolicyLossConfig, policy_loss, token_log_probs

V, T, EOS = 3, 3, 0
sg = jax.lax.stop_gradient


def tabular_logp(theta_TxCxV, seqs_NxT):
  """log pi(y_t | y_{t-1}) per token; context V is the start of the sequence."""
  prev_NxT = jnp.concatenate([jnp.full((seqs_NxT.shape[0], 1), V), seqs_NxT[:, :-1]], axis=1)
  logits_NxTxV = theta_TxCxV[jnp.arange(seqs_NxT.shape[1])[None, :], prev_NxT]
  return token_log_probs(logits_NxTxV, seqs_NxT)


def all_sequences(length, stop_at_eos):
  """Every sequence, and its mask; with `stop_at_eos` a sequence ends at its first EOS (later tokens are
  padding, filled with 1 so a bug that reads them changes the numbers)."""
  seqs = set()
  for seq in itertools.product(range(V), repeat=length):
    n = seq.index(EOS) + 1 if stop_at_eos and EOS in seq else length
    seqs.add(seq[:n] + (1,) * (length - n))
  seqs = sorted(seqs)
  mask = np.zeros((len(seqs), length), np.float32)
  for i, seq in enumerate(seqs):
    n = seq.index(EOS) + 1 if stop_at_eos and EOS in seq else length
    mask[i, :n] = 1.0
  return jnp.asarray(np.array(seqs, np.int32)), jnp.asarray(mask)


THETA = jax.random.normal(jax.random.key(0), (T, V + 1, V))
REF_THETA = jax.random.normal(jax.random.key(1), (T, V + 1, V))
OLD_THETA = THETA + 0.5 * jax.random.normal(jax.random.key(2), (T, V + 1, V))


def exact_kl(theta, seqs, mask):
  logp_NxT = tabular_logp(theta, seqs) * mask
  ref_NxT = tabular_logp(REF_THETA, seqs) * mask
  p_N = jnp.exp(logp_NxT.sum(-1))
  assert abs(float(sg(p_N).sum()) - 1.0) < 1e-5  # the enumeration covers the whole distribution
  return jnp.sum(p_N * (logp_NxT - ref_NxT).sum(-1))


def expected_kl_term(theta, seqs, mask, cfg, sample_theta=None):
  """sum_y sg(mu(y)) * loss(y), one sequence per batch (B = 1), with y ~ mu = pi (on-policy) or the old
  policy (`sample_theta`, mu > 1: the loss gets old log-probs and corrects with its ratio)."""
  logp_NxT = tabular_logp(theta, seqs)
  ref_NxT = sg(tabular_logp(REF_THETA, seqs))
  old_NxT = sg(logp_NxT) if sample_theta is None else sg(tabular_logp(sample_theta, seqs))
  mu_N = jnp.exp(jnp.sum(old_NxT * mask, -1))

  def one(lp_T, old_T, ref_T, m_T):
    loss, _ = policy_loss(lp_T[None], old_T[None], jnp.zeros(1), m_T[None], cfg, ref_logp_BxT=ref_T[None])
    return loss
  return jnp.sum(mu_N * jax.vmap(one)(logp_NxT, old_NxT, ref_NxT, mask))


@pytest.mark.parametrize("aggregation", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_gradient_mode_is_the_exact_kl_gradient(aggregation):
  seqs, mask = all_sequences(T, stop_at_eos=False)
  assert seqs.shape == (V ** T, T)
  want = jax.grad(exact_kl)(THETA, seqs, mask)
  cfg = PolicyLossConfig(kl_beta=1.0, aggregation=aggregation)
  got = jax.grad(expected_kl_term)(THETA, seqs, mask, cfg)
  # B = 1 and every sequence has T tokens: each aggregation weighs every token by 1 / T.
  np.testing.assert_allclose(got, want / T, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(want).max()) > 0.05


def test_gradient_mode_with_eos_and_padding_is_exact_under_a_constant_token_weight():
  # Variable lengths: sequences stop at EOS. Under seq-mean-token-sum-norm every token weighs 1 / (B * L)
  # whatever its sequence's length, so the term's gradient is exactly grad KL / L.
  seqs, mask = all_sequences(T, stop_at_eos=True)
  assert seqs.shape[0] < V ** T and float(mask.min()) == 0.0
  want = jax.grad(exact_kl)(THETA, seqs, mask)
  cfg = PolicyLossConfig(kl_beta=1.0, aggregation="seq-mean-token-sum-norm", max_completion_len=T)
  got = jax.grad(expected_kl_term)(THETA, seqs, mask, cfg)
  np.testing.assert_allclose(got, want / T, rtol=1e-4, atol=1e-6)


def test_gradient_mode_off_policy_single_token_is_exact_with_the_ratio():
  # One token: the token ratio is the sequence ratio, so samples of the old policy reweighted by
  # rho = pi / pi_old give grad KL(pi || ref) exactly (without the ratio they would give the old policy's).
  seqs, mask = all_sequences(1, stop_at_eos=False)
  theta, old = THETA[:1], OLD_THETA[:1]
  want = jax.grad(exact_kl)(theta, seqs, mask)
  cfg = PolicyLossConfig(kl_beta=1.0, aggregation="token-mean")
  got = jax.grad(expected_kl_term)(theta, seqs, mask, cfg, sample_theta=old)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(jax.grad(exact_kl)(old, seqs, mask) - want).max()) > 0.05  # the ratio matters


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_loss_mode_estimators_do_not_give_the_kl_gradient(estimator):
  # The pitfall the gradient mode fixes: differentiating k1 gives 0 in expectation, k2 and k3 per token
  # miss the future tokens' log-ratios. Kept as a comparison with TRL, so its gradient must differ.
  seqs, mask = all_sequences(T, stop_at_eos=False)
  want = jax.grad(exact_kl)(THETA, seqs, mask) / T
  cfg = PolicyLossConfig(kl_beta=1.0, kl_estimator=estimator, kl_mode="loss", aggregation="token-mean")
  got = jax.grad(expected_kl_term)(THETA, seqs, mask, cfg)
  assert float(jnp.abs(got - want).max()) > 0.01
  if estimator == "k1":
    np.testing.assert_allclose(got, 0.0, atol=1e-5)
