"""rr.losses.chunked_completion_nll: the value and gradients of the full-logits NLL, by numpy and through the
Decoder (tied and untied heads, read by lm_head_weight), with less compiled memory than the full logits at a
vocabulary-heavy shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.losses import chunked_completion_nll, completion_nll, lm_head_weight
from rr.models import Decoder, init_params, model_config


def numpy_nll_and_grads(hidden, unembed, tokens, mask):
  """float64 token-mean NLL of tokens[t + 1] under softmax(hidden[t] @ unembed^T), and its gradients by hand."""
  h, w = np.asarray(hidden, np.float64), np.asarray(unembed, np.float64)
  targets = np.concatenate([tokens[:, 1:], np.zeros_like(tokens[:, :1])], axis=1)
  logits = h @ w.T
  logits -= logits.max(-1, keepdims=True)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  one_hot = np.eye(w.shape[0])[targets]
  count = mask.sum()
  nll = -(np.log((probs * one_hot).sum(-1)) * mask).sum() / count
  d_logits = (probs - one_hot) * mask[..., None] / count
  return nll, count, d_logits @ w, np.einsum("btv,btd->vd", d_logits, h)


@pytest.mark.parametrize("chunk_tokens", [1, 8, 21, 1000], ids=["one_column", "uneven", "whole", "larger"])
def test_value_and_gradients_equal_the_full_logits_by_numpy(chunk_tokens):
  rng = np.random.default_rng(0)
  B, T, D, V = 3, 7, 16, 50
  hidden = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
  unembed = jnp.asarray(rng.normal(size=(V, D)) / 4, jnp.float32)
  tokens = rng.integers(0, V, (B, T))
  mask = (rng.random((B, T)) < 0.7).astype(np.float32)
  mask[:, -1] = 0  # no target after the last column
  nll, count, d_hidden, d_unembed = numpy_nll_and_grads(hidden, unembed, tokens, mask)

  loss = lambda h, w: chunked_completion_nll(h, w, jnp.asarray(tokens), jnp.asarray(mask), chunk_tokens)
  (value, got_count), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(hidden, unembed)
  assert float(got_count) == count > 0
  np.testing.assert_allclose(value, nll, rtol=1e-5)
  np.testing.assert_allclose(grads[0], d_hidden, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grads[1], d_unembed, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("tied,dtype", [(True, "float32"), (False, "bfloat16")], ids=["tied_f32", "untied_bf16"])
def test_decoder_hidden_and_lm_head_weight_give_the_full_path_loss_and_param_gradients(tied, dtype):
  """What the nll term computes today (Decoder logits -> completion_nll) against the chunked path from the same
  forward's hidden states, gradients taken through the whole model."""
  cfg = model_config("nano", 64, num_layers=1, tie_embeddings=tied, dtype=dtype)
  rng = np.random.default_rng(1)
  abstract = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.key(0))  # no init to compile
  params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.normal(size=a.shape), a.dtype), abstract)
  tokens = jnp.asarray(rng.integers(0, 64, (2, 12)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (2, 12))
  mask = jnp.asarray(np.pad(np.ones((2, 11), np.float32), ((0, 0), (0, 1))))

  def full(p):
    logits, _ = Decoder(cfg).apply({"params": p}, tokens, positions)
    return completion_nll(logits, tokens, mask)[0]

  def chunked(p):
    _, _, hidden = Decoder(cfg).apply({"params": p}, tokens, positions, return_hidden=True)
    return chunked_completion_nll(hidden, lm_head_weight(p), tokens, mask, chunk_tokens=6)[0]

  assert ("lm_head" in params) == (not tied)
  (want, want_grads), (got, got_grads) = (jax.jit(jax.value_and_grad(f))(params) for f in (full, chunked))
  tol = dict(rtol=1e-5, atol=1e-7) if dtype == "float32" else dict(rtol=2e-2, atol=2e-4)
  np.testing.assert_allclose(got, want, **tol)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **tol), got_grads, want_grads)


def test_compiled_temporaries_are_smaller_than_the_full_logits():
  """XLA's buffer assignment for value_and_grad wrt hidden and weights (as tests/test_remat.py reads it): 4 x 256
  tokens, V = 8192, so the float32 logits alone are 32 MB; 128-token blocks hold 4 MB of them."""
  B, T, D, V = 4, 256, 32, 8192
  args = (jax.ShapeDtypeStruct((B, T, D), jnp.float32), jax.ShapeDtypeStruct((V, D), jnp.float32))
  tokens, mask = jnp.zeros((B, T), jnp.int32), jnp.ones((B, T), jnp.float32)

  def full(h, w):
    return completion_nll(jnp.einsum("btd,vd->btv", h, w), tokens, mask)[0]

  def chunked(h, w):
    return chunked_completion_nll(h, w, tokens, mask, chunk_tokens=128)[0]

  temp = {f.__name__: jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(*args).compile().memory_analysis()
          .temp_size_in_bytes for f in (full, chunked)}
  assert temp["full"] > B * T * V * 4, temp  # the whole logits are live in the full path
  assert temp["chunked"] < 0.3 * temp["full"], temp


def test_rejects_a_chunk_of_no_tokens():
  with pytest.raises(ValueError, match="chunk_tokens must be positive"):
    chunked_completion_nll(jnp.zeros((1, 2, 4)), jnp.zeros((8, 4)), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2)), 0)


def test_train_loss_chunk_tokens_gives_the_nll_terms_value_and_gradient(monkeypatch):
  """The wiring: the objective's nll term with config.train.loss_chunk_tokens runs the chunked loss (counted)
  and equals the full-logits term."""
  from rr.config import base_config
  from rr.train import objectives
  from rr.train.batch import TrainBatch
  from rr.train.objectives import Parts, make_objective

  calls = []
  def counted(*args):
    calls.append(args[-1])
    return chunked_completion_nll(*args)

  monkeypatch.setattr(objectives, "chunked_completion_nll", counted)

  cfg = model_config("nano", vocab_size=40)
  params = init_params(cfg, jax.random.key(1))
  rng = np.random.default_rng(2)
  tokens = jnp.asarray(rng.integers(2, 40, (4, 10)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(10, dtype=jnp.int32), (4, 10))
  batch = TrainBatch(tokens=tokens, positions=positions, demo_mask=jnp.asarray(rng.random((4, 10)) < 0.6, jnp.float32))
  results = []
  for chunk in (0, 8):
    config = base_config()
    config.train.loss_chunk_tokens = chunk
    objective = make_objective(config, Parts(Decoder(cfg)), ["nll"])
    results.append(jax.jit(jax.value_and_grad(lambda p: objective(p, batch, {}, None)[0]))(params))
  assert calls == [8]  # traced once, with the config's chunk; the full path never called it
  (full, full_grads), (chunked, chunked_grads) = results
  np.testing.assert_allclose(float(chunked), float(full), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(chunked_grads), jax.tree.leaves(full_grads)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
