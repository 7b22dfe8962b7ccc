"""Decoding strategies: how the next token is picked from the model's logits.

Each strategy is a small frozen (hence hashable) dataclass, so it can key the
sampler's cache of jitted functions. Both methods are pure jnp functions of
one decode step's logits:

    log_probs(logits_BxV) -> BxV   log-probabilities of the distribution tokens are drawn from
    choose(logits_BxV, rng) -> B   the chosen token ids (int32)

Tokens a filter removes get log-probability -inf, so `log_probs` of a chosen
token is always finite and is the log of the probability it was drawn with.
"""

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Greedy:
  """Always the most likely token; its log-probs are the raw model's (temperature 1)."""

  def log_probs(self, logits_BxV: jax.Array) -> jax.Array:
    return jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)

  def choose(self, logits_BxV: jax.Array, rng: jax.Array | None = None) -> jax.Array:
    del rng  # deterministic
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Ancestral sampling with temperature, then top-k, then top-p (nucleus), as in HF.

  top_k=0 and top_p=1.0 switch the filters off. Top-p keeps the smallest set of
  most likely tokens whose (temperature-scaled, top-k renormalised) mass is >= top_p.
  """

  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0

  def __post_init__(self):
    if not self.temperature > 0:
      raise ValueError(f"Sampling.temperature must be > 0, got {self.temperature}; "
                       "use Greedy() for argmax decoding")
    if self.top_k < 0:
      raise ValueError(f"Sampling.top_k must be >= 0 (0 = off), got {self.top_k}")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"Sampling.top_p must be in (0, 1] (1.0 = off), got {self.top_p}")

  def log_probs(self, logits_BxV: jax.Array) -> jax.Array:
    scaled_BxV = logits_BxV.astype(jnp.float32) / self.temperature
    if self.top_k or self.top_p < 1.0:
      keep_BxV = keep_mask(scaled_BxV, self.top_k, self.top_p)
      scaled_BxV = jnp.where(keep_BxV, scaled_BxV, -jnp.inf)
    return jax.nn.log_softmax(scaled_BxV, axis=-1)

  def choose(self, logits_BxV: jax.Array, rng: jax.Array) -> jax.Array:
    return jax.random.categorical(rng, self.log_probs(logits_BxV), axis=-1).astype(jnp.int32)


def keep_mask(logits_BxV: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Bool BxV: the tokens that survive top-k (0 = off) and then top-p (1.0 = off).

  Top-k keeps exactly k tokens (ties broken by index). Top-p works on the
  candidates top-k left, sorted by probability: a token is kept while the mass
  of the tokens before it is still < top_p, so the most likely token always stays.
  """
  batch, vocab = logits_BxV.shape
  k = min(top_k, vocab) if top_k else vocab
  # lax.top_k returns candidates sorted, most likely first (a full sort when k == vocab).
  top_logits_BxK, top_ids_BxK = jax.lax.top_k(logits_BxV, k)
  keep_BxK = jnp.ones((batch, k), dtype=bool)
  if top_p < 1.0:
    probs_BxK = jax.nn.softmax(top_logits_BxK, axis=-1)
    mass_before_BxK = jnp.cumsum(probs_BxK, axis=-1) - probs_BxK
    keep_BxK = mass_before_BxK < top_p
  rows_Bx1 = jnp.arange(batch)[:, None]
  return jnp.zeros((batch, vocab), dtype=bool).at[rows_Bx1, top_ids_BxK].set(keep_BxK)
