"""PPO's value head: one linear layer (D -> 1) on the decoder's final hidden states (a shared trunk).

It is a separate pytree, not part of the Decoder's params, so policy checkpoints, the sampler and
evaluation never see it. It starts at zero: V = 0 everywhere, and the first value-loss gradient reaches
only the head, so a policy loaded from an SFT checkpoint is not pushed around by a random critic.
"""

import jax.numpy as jnp

from rr.models.config import ModelConfig


def init_value_head(cfg: ModelConfig) -> dict:
  """Zero kernel [D, 1] and bias [1], in float32 (tiny; kept replicated on the mesh)."""
  return {"kernel": jnp.zeros((cfg.hidden_size, 1), jnp.float32), "bias": jnp.zeros((1,), jnp.float32)}


def apply_value_head(head: dict, hidden_BxTxD: jnp.ndarray) -> jnp.ndarray:
  """Values [B, T] in float32 from `Decoder(..., return_hidden=True)`'s hidden states."""
  values_BxTx1 = jnp.einsum("btd,do->bto", hidden_BxTxD.astype(jnp.float32), head["kernel"]) + head["bias"]
  return values_BxTx1[..., 0]
