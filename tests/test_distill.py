"""Logit distillation against divergences written out by hand in numpy, on 3- and 4-token vocabularies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.losses import distillation_loss, sparse_distillation_loss, sparse_token_divergence, token_divergence


def softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def kl(p, q):
  return float(sum(pi * np.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


S = np.array([[[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]], np.float32)  # student logits [1, 2, 3]
T = np.array([[[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]]], np.float32)  # teacher logits


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_each_divergence_is_the_formula_at_the_temperature(divergence, temperature):
  beta = 0.3
  want = []
  for t in range(2):
    p, q = softmax(T[0, t] / temperature), softmax(S[0, t] / temperature)
    if divergence == "forward_kl":
      want.append(kl(p, q))
    elif divergence == "reverse_kl":
      want.append(kl(q, p))
    else:
      m = beta * p + (1 - beta) * q
      want.append(beta * kl(p, m) + (1 - beta) * kl(q, m))
  got = token_divergence(S, T, divergence, beta=beta, temperature=temperature)
  np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-5)
  # The loss is the token mean over the mask: only position 1 here.
  loss = distillation_loss(S, T, jnp.array([[0.0, 1.0]]), divergence, beta=beta, temperature=temperature)
  np.testing.assert_allclose(loss, want[1], rtol=1e-5)


def test_jsd_is_symmetric_at_one_half_bounded_by_log_2_and_zero_on_equal_logits():
  a = token_divergence(S, T, "jsd", beta=0.5)
  b = token_divergence(T, S, "jsd", beta=0.5)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  far = token_divergence(jnp.array([[[30.0, 0.0]]]), jnp.array([[[0.0, 30.0]]]), "jsd", beta=0.5)
  assert 0.69 < float(far[0, 0]) <= np.log(2) + 1e-6
  for divergence in ("forward_kl", "reverse_kl", "jsd"):
    np.testing.assert_allclose(token_divergence(S, S, divergence), 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="0 < beta < 1"):
    token_divergence(S, T, "jsd", beta=0.0)
  with pytest.raises(ValueError, match="divergence='kl'"):
    token_divergence(S, T, "kl")


def test_padded_vocabulary_rows_are_excluded():
  """A 4th row the tokenizer never emits: with vocab_size=3 it changes nothing, whatever its logit."""
  pad = np.full((1, 2, 1), 5.0, np.float32)
  got = token_divergence(np.concatenate([S, pad], -1), np.concatenate([T, -pad], -1), vocab_size=3)
  np.testing.assert_allclose(got, token_divergence(S, T), rtol=1e-6)
  assert not np.allclose(token_divergence(np.concatenate([S, pad], -1), np.concatenate([T, -pad], -1)),
                         token_divergence(S, T), rtol=1e-3)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_restricts_both_distributions_to_the_teachers_k_best_and_keeps_gradients_finite(divergence):
  s = np.array([[[1.0, 0.0, 1.0, 3.0]]], np.float32)
  t = np.array([[[0.0, 2.0, 1.0, -4.0]]], np.float32)  # the teacher's top 2: tokens 1 and 2
  p, q = softmax(t[0, 0, [1, 2]]), softmax(s[0, 0, [1, 2]])
  want = {"forward_kl": kl(p, q), "reverse_kl": kl(q, p),
          "jsd": 0.5 * kl(p, (p + q) / 2) + 0.5 * kl(q, (p + q) / 2)}[divergence]
  got = token_divergence(s, t, divergence, top_k=2)
  assert want > 0.05
  np.testing.assert_allclose(got[0, 0], want, rtol=1e-5)
  grad = jax.grad(lambda x: distillation_loss(x, t, jnp.ones((1, 1)), divergence, top_k=2))(jnp.asarray(s))
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(np.asarray(grad)[0, 0, [0, 3]], 0.0, atol=1e-12)  # outside the support: no gradient
  assert np.abs(np.asarray(grad)[0, 0, [1, 2]]).sum() > 0


def test_the_gradient_reaches_the_student_only_and_moves_it_towards_the_teacher():
  loss = lambda s, t: distillation_loss(s, t, jnp.ones((1, 2)))
  g_student, g_teacher = jax.grad(loss, argnums=(0, 1))(jnp.asarray(S), jnp.asarray(T))
  np.testing.assert_allclose(g_teacher, 0.0)
  stepped = jnp.asarray(S) - 0.5 * g_student
  assert float(loss(stepped, T)) < float(loss(S, T))


def test_jsd_scaled_tends_to_the_forward_kl_as_beta_goes_to_0_and_to_the_reverse_kl_as_beta_goes_to_1():
  """JSD / beta -> KL(teacher || student) and JSD / (1 - beta) -> KL(student || teacher), against KLs in float64
  numpy; the loss runs in float32, so 1e-4 from the ends is as close as its rounding lets the limit be read."""
  forward = [kl(softmax(T[0, t].astype(np.float64)), softmax(S[0, t].astype(np.float64))) for t in range(2)]
  reverse = [kl(softmax(S[0, t].astype(np.float64)), softmax(T[0, t].astype(np.float64))) for t in range(2)]
  assert min(abs(f - r) / f for f, r in zip(forward, reverse)) > 0.1  # the two limits are told apart
  for beta, scale, want in ((1e-4, 1e-4, forward), (1 - 1e-4, 1e-4, reverse)):
    got = np.asarray(token_divergence(S, T, "jsd", beta=beta))[0] / scale
    np.testing.assert_allclose(got, want, rtol=2e-3)
  # ... and it is a limit: at beta = 0.01 the scaled JSD is still visibly off.
  far = np.asarray(token_divergence(S, T, "jsd", beta=1e-2))[0] / 1e-2
  assert np.all(np.abs(far - forward) / forward > 5e-3)


def _top_k_divergence_by_hand(s, t, k, divergence, beta, temperature):
  """One position: both distributions on the teacher's k best tokens, renormalised, at one temperature."""
  support = np.argsort(-t)[:k]
  p, q = softmax(t[support] / temperature), softmax(s[support] / temperature)
  if divergence == "forward_kl":
    return kl(p, q)
  if divergence == "reverse_kl":
    return kl(q, p)
  m = beta * p + (1 - beta) * q
  return beta * kl(p, m) + (1 - beta) * kl(q, m)


LOGITS_RNG = np.random.default_rng(0)
S5 = LOGITS_RNG.normal(size=(2, 3, 5)).astype(np.float32) * 2  # student [B=2, T=3, V=5], no ties
T5 = LOGITS_RNG.normal(size=(2, 3, 5)).astype(np.float32) * 2
MASK = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_top_k_loss_is_the_token_mean_of_renormalised_divergences_over_the_mask_only(divergence):
  beta, temperature, k = 0.3, 2.0, 3
  kept = [(b, t) for b in range(2) for t in range(3) if MASK[b, t]]
  want = np.mean([_top_k_divergence_by_hand(S5[b, t], T5[b, t], k, divergence, beta, temperature) for b, t in kept])
  loss = lambda s, t: distillation_loss(s, t, MASK, divergence, beta=beta, temperature=temperature, top_k=k)
  np.testing.assert_allclose(loss(S5, T5), want, rtol=1e-5)
  # Whatever the masked positions hold, they add nothing to the loss and get no gradient.
  wild_s, wild_t = S5.copy(), T5.copy()
  wild_s[MASK == 0], wild_t[MASK == 0] = 300.0 * np.sign(S5[MASK == 0]), -300.0 * np.sign(S5[MASK == 0])
  np.testing.assert_allclose(loss(wild_s, wild_t), want, rtol=1e-5)
  grad = np.asarray(jax.grad(loss)(jnp.asarray(wild_s), wild_t))
  np.testing.assert_array_equal(grad[MASK == 0], 0.0)
  assert np.abs(grad[MASK == 1]).sum() > 0
  # An empty mask is a loss of 0, not a NaN.
  assert float(distillation_loss(S5, T5, np.zeros_like(MASK), divergence, beta=beta, top_k=k)) == 0.0


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "jsd"])
def test_sparse_loss_from_top_k_logits_and_ids_equals_the_dense_top_k_loss(divergence):
  """What a logit cache stores (the teacher's k best logits and their ids) gives the dense loss's value and
  gradient at top_k = k, whatever order the k entries come in."""
  k, beta, temperature = 3, 0.7, 2.0
  ids = np.argsort(-T5, axis=-1)[..., :k][..., ::-1].astype(np.int32)  # reversed: the order must not matter
  top_logits = np.take_along_axis(T5, ids, axis=-1)
  dense = lambda s: distillation_loss(s, T5, MASK, divergence, beta=beta, temperature=temperature, top_k=k)
  sparse = lambda s: sparse_distillation_loss(s, top_logits, ids, MASK, divergence, beta=beta,
                                              temperature=temperature)
  assert float(dense(S5)) > 1e-3
  np.testing.assert_allclose(sparse(S5), dense(S5), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(sparse)(jnp.asarray(S5)), jax.grad(dense)(jnp.asarray(S5)), atol=1e-7)
  np.testing.assert_allclose(sparse_token_divergence(S5, top_logits, ids, divergence, beta, temperature),
                             token_divergence(S5, T5, divergence, beta, temperature, top_k=k), rtol=1e-5)
