"""Completion-only negative log-likelihood for SFT on rationales.

The target log-probability is read with a one-hot product instead of `take_along_axis`: on XLA:CPU the
backward of a gather is a scatter that costs more than the matmuls of a small model, while the one-hot
product fuses into the log-softmax. Both give the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def scale_logits(logits_BxTxV: jax.Array, temperature: float = 1.0) -> jax.Array:
  """float32 logits / T: the distribution a sampler at temperature T draws from (before top-k / top-p).

  The trainer scores rollouts with the same T as the sampler (as TRL and verl do), so the ratio, the KL
  and the entropy refer to the policy that produced the samples; T = 1 returns the logits unchanged.
  """
  logits = logits_BxTxV.astype(jnp.float32)
  return logits if temperature == 1.0 else logits / temperature


def token_log_probs(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
  """log p(target) at every position, in float32."""
  logits = logits_BxTxV.astype(jnp.float32)
  log_z_BxT = jax.nn.logsumexp(logits, axis=-1)
  one_hot = jax.nn.one_hot(targets_BxT, logits.shape[-1], dtype=logits.dtype)
  return jnp.einsum("btv,btv->bt", logits, one_hot) - log_z_BxT


def next_token_targets(tokens_BxT: jax.Array) -> jax.Array:
  """tokens shifted left by one (the last position gets 0 and is always masked out)."""
  return jnp.concatenate([tokens_BxT[:, 1:], jnp.zeros_like(tokens_BxT[:, :1])], axis=1)


def sequence_log_probs(logits_BxTxV: jax.Array, tokens_BxT: jax.Array, temperature: float = 1.0) -> jax.Array:
  """log p(tokens[t + 1]) read at every position t: the rr.data / rr.train.batch mask convention.

  `temperature`: the distribution logits / T (`scale_logits`), the one a sampler at T drew the tokens from.
  """
  return token_log_probs(scale_logits(logits_BxTxV, temperature), next_token_targets(tokens_BxT))


def completion_nll(logits_BxTxV: jax.Array, tokens_BxT: jax.Array,
                   loss_mask_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean NLL over the masked next-token targets of the whole batch, and the number of those targets.

  Convention (rr.data.SFTBatches): `loss_mask[b, t] = 1` when `tokens[b, t + 1]` is a completion token, so
  the logits at `t` are scored against `tokens[t + 1]`; the last position has no target.
  Token-mean over the global batch: every completion token weighs the same, whichever row holds it.
  """
  mask = loss_mask_BxT.astype(jnp.float32)
  logp_BxT = sequence_log_probs(logits_BxTxV, tokens_BxT)
  count = mask.sum()
  return -(logp_BxT * mask).sum() / jnp.maximum(count, 1.0), count
