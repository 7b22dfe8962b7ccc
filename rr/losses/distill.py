"""Logit distillation: a divergence between the teacher's and the student's next-token distributions.

docs/methods.md, "Logit distillation". Both distributions are taken at the same temperature (logits / T).
  forward_kl  KL(teacher || student): mean-seeking, the student covers every token the teacher likes (Hinton KD)
  reverse_kl  KL(student || teacher): mode-seeking, the student puts its mass where the teacher is sure (MiniLLM)
  jsd         beta * KL(teacher || M) + (1 - beta) * KL(student || M), M = beta * teacher + (1 - beta) * student
              (the generalised JSD of on-policy distillation, GKD); bounded, and symmetric at beta = 0.5
The loss is the token mean over `mask` (1 where the position's next token is trained on).

`vocab_size` drops the embedding rows a tokenizer never emits (Hugging Face tables are often padded), so neither
distribution puts mass there. `top_k` keeps the teacher's k most likely tokens at each position and restricts
both distributions to them, renormalised: what a cache of top-k teacher logits holds. Because both share one
support, all three divergences stay finite. Excluded entries get a large negative logit, not -inf, so no NaN
reaches the gradient. `sparse_distillation_loss` is the same loss from such a cache: the teacher's top-k logits
and their token ids, the student's logits gathered at those ids.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rr.losses.sft import scale_logits

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
_EXCLUDED = -1e30  # a logit whose probability is exactly 0 after softmax, and whose log stays finite


def _kl(log_a: jax.Array, log_b: jax.Array) -> jax.Array:
  """KL(a || b) over the last axis from log-probabilities; entries where a is 0 add nothing."""
  a = jnp.exp(log_a)
  return jnp.sum(jnp.where(a > 0, a * (log_a - log_b), 0.0), axis=-1)


def token_divergence(student_logits_BxTxV: jax.Array, teacher_logits_BxTxV: jax.Array, divergence: str = "forward_kl",
                     beta: float = 0.5, temperature: float = 1.0, top_k: int = 0,
                     vocab_size: int | None = None) -> jax.Array:
  """The divergence at every position, [B, T] (see the module docstring for the options)."""
  _check(divergence, beta)
  student = scale_logits(student_logits_BxTxV, temperature)
  teacher = scale_logits(teacher_logits_BxTxV, temperature)
  if vocab_size is not None:
    student, teacher = student[..., :vocab_size], teacher[..., :vocab_size]
  if top_k:
    kth_Bx1 = jax.lax.top_k(teacher, top_k)[0][..., -1:]
    keep = teacher >= kth_Bx1
    student, teacher = jnp.where(keep, student, _EXCLUDED), jnp.where(keep, teacher, _EXCLUDED)
  return _divergence(student, teacher, divergence, beta)


def _check(divergence: str, beta: float) -> None:
  if divergence not in DIVERGENCES:
    raise ValueError(f"divergence={divergence!r}; expected one of {DIVERGENCES}")
  if divergence == "jsd" and not 0.0 < beta < 1.0:
    raise ValueError(f"jsd needs 0 < beta < 1 (got {beta}); its limits are divergence='forward_kl' and 'reverse_kl'")


def _divergence(student: jax.Array, teacher: jax.Array, divergence: str, beta: float) -> jax.Array:
  """The divergence over the last axis between the two (scaled, restricted) logit vectors."""
  log_q = jax.nn.log_softmax(student, axis=-1)
  log_p = jax.nn.log_softmax(jax.lax.stop_gradient(teacher), axis=-1)  # the teacher is frozen
  if divergence == "forward_kl":
    return _kl(log_p, log_q)
  if divergence == "reverse_kl":
    return _kl(log_q, log_p)
  log_m = jnp.logaddexp(jnp.log(beta) + log_p, jnp.log(1.0 - beta) + log_q)
  return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


def _token_mean(d_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  mask = mask_BxT.astype(jnp.float32)
  return jnp.sum(jnp.where(mask > 0, d_BxT * mask, 0.0)) / jnp.maximum(mask.sum(), 1.0)


def distillation_loss(student_logits_BxTxV: jax.Array, teacher_logits_BxTxV: jax.Array, mask_BxT: jax.Array,
                      divergence: str = "forward_kl", beta: float = 0.5, temperature: float = 1.0, top_k: int = 0,
                      vocab_size: int | None = None) -> jax.Array:
  """The token mean over `mask` of `token_divergence`: a scalar, 0 when the mask is empty."""
  d_BxT = token_divergence(student_logits_BxTxV, teacher_logits_BxTxV, divergence, beta, temperature, top_k,
                           vocab_size)
  return _token_mean(d_BxT, mask_BxT)


def sparse_token_divergence(student_logits_BxTxV: jax.Array, teacher_topk_logits_BxTxK: jax.Array,
                            teacher_topk_ids_BxTxK: jax.Array, divergence: str = "forward_kl", beta: float = 0.5,
                            temperature: float = 1.0) -> jax.Array:
  """The divergence at every position, [B, T], with the teacher given as its top-k logits and their ids: both
  distributions restricted to those k tokens and renormalised, as `token_divergence(..., top_k=k)`."""
  _check(divergence, beta)
  # A gather (its backward a scatter on XLA:CPU) over k columns: cheap next to the model at these k.
  student = jnp.take_along_axis(scale_logits(student_logits_BxTxV, temperature), teacher_topk_ids_BxTxK, axis=-1)
  return _divergence(student, scale_logits(teacher_topk_logits_BxTxK, temperature), divergence, beta)


def sparse_distillation_loss(student_logits_BxTxV: jax.Array, teacher_topk_logits_BxTxK: jax.Array,
                             teacher_topk_ids_BxTxK: jax.Array, mask_BxT: jax.Array, divergence: str = "forward_kl",
                             beta: float = 0.5, temperature: float = 1.0) -> jax.Array:
  """The token mean over `mask` of `sparse_token_divergence`: the loss from cached top-k teacher logits."""
  d_BxT = sparse_token_divergence(student_logits_BxTxV, teacher_topk_logits_BxTxK, teacher_topk_ids_BxTxK,
                                  divergence, beta, temperature)
  return _token_mean(d_BxT, mask_BxT)
