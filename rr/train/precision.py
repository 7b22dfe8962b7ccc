"""Float32 master weights for low-precision params, as an optax wrapper around the optimiser.

A bfloat16 weight has an 8-bit significand: an update below half its spacing (2^-9 to 2^-8 of the weight)
rounds away, so bf16 params updated in place stop learning at small learning rates. `with_float32_master`
keeps a float32 copy of the params (the master) in the optimiser state, casts the gradients to float32,
runs the inner transform (clip, AdamW, weight decay) on the master, and returns updates that take each
param to the rounding of its new master. The params themselves stay in their own dtype: they are what the
forward, the sampler and exported checkpoints read. Cost: 4 bytes per param of optimiser state.

The master's tree is the params' tree, so `optax.tree_map_params` gives it the params' shardings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class MasterState(NamedTuple):
  master: Any  # float32 copy of the params, same tree
  inner: Any  # the inner transform's state, which tracks the master


def with_float32_master(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner` applied to a float32 master copy of the params; `update` needs the params.

  If a param no longer is the rounding of its master, the params were replaced from outside after the state
  was made (e.g. loaded into a fresh train state): that master restarts from the param.
  Params that are float32 already get the inner update unchanged (their master equals them).
  """

  def init(params):
    master = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    return MasterState(master=master, inner=inner.init(master))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("with_float32_master: update() needs the current params")
    master = jax.tree.map(
        lambda m, p: jnp.where(m.astype(p.dtype) == p, m, p.astype(jnp.float32)), state.master, params)
    grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    inner_updates, inner_state = inner.update(grads, state.inner, master)
    new_master = optax.apply_updates(master, inner_updates)

    def param_update(new_m, u, p):
      if p.dtype == jnp.float32:
        return u  # p + u is exactly new_m: the same float32 sum apply_updates does
      # Both terms are exact in float32, so apply_updates' p + update (in float32) is the rounded master.
      return new_m.astype(p.dtype).astype(jnp.float32) - p.astype(jnp.float32)

    updates = jax.tree.map(param_update, new_master, inner_updates, params)
    return updates, MasterState(master=new_master, inner=inner_state)

  return optax.GradientTransformation(init, update)


def float32_norm(tree) -> jax.Array:
  """Global L2 norm with squares summed in float32 (bf16 gradients summed in bf16 lose digits)."""
  return optax.tree.norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))
