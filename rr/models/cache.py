"""The KV cache: a plain pytree passed into and returned from the model call.

    {"k": [L arrays B x S x KVH x Dh], "v": [same], "pos": int32 B x S, "end": int32 scalar}

`pos` holds the position of the token in each slot (-1 = empty or padding, so
never attended to); `end` is the next free slot. A call with T new tokens
writes slots [end, end + T) and advances `end` by T. Writing past S is not
checked inside jit (dynamic_update_slice would clamp): size the cache for
prompt + new tokens.
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from rr.models.config import ModelConfig


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> dict:
  """An empty cache for `batch` rows of up to `max_len` tokens (dtype defaults to cfg.dtype)."""
  dtype = jnp.dtype(dtype) if dtype is not None else cfg.compute_dtype
  shape = (batch, max_len, cfg.num_kv_heads, cfg.resolved_head_dim)
  return {
      "k": [jnp.zeros(shape, dtype) for _ in range(cfg.num_layers)],
      "v": [jnp.zeros(shape, dtype) for _ in range(cfg.num_layers)],
      "pos": jnp.full((batch, max_len), -1, jnp.int32),
      "end": jnp.zeros((), jnp.int32),
  }


def cache_logical_axes(cfg: ModelConfig) -> dict:
  """Logical PartitionSpecs of a cache (same tree as init_cache), for sharded decoding."""
  kv = PartitionSpec("batch", None, "kv_heads", "head_dim")
  return {
      "k": [kv] * cfg.num_layers,
      "v": [kv] * cfg.num_layers,
      "pos": PartitionSpec("batch", None),
      "end": PartitionSpec(),
  }


def write_slots(buffer_BxSx_: jnp.ndarray, new_BxTx_: jnp.ndarray, end: jnp.ndarray) -> jnp.ndarray:
  """Writes new_BxTx_ into buffer_BxSx_ at slots [end, end + T) along axis 1."""
  start = (0, jnp.asarray(end, jnp.int32)) + (0,) * (buffer_BxSx_.ndim - 2)
  return jax.lax.dynamic_update_slice(buffer_BxSx_, new_BxTx_.astype(buffer_BxSx_.dtype), start)


def repeat_rows(tree, times: int):
  """Repeats every batch-leading leaf `times` times along axis 0 (prompt-major); scalars stay.

  On a cache: row b of `tree` becomes rows b*times .. b*times+times-1 (k, v, pos), `end` is kept, so
  one prefilled prompt serves `times` continuations.
  """
  if times == 1:
    return tree
  return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0) if x.ndim else x, tree)
