"""AdamW with linear warm-up, cosine decay and global-norm clipping, from the optim config.

Low-precision params (`config.model.param_dtype = "bfloat16"`) get float32 master weights in the optimiser
state (rr.train.precision): AdamW's small steps would round away on the bf16 params themselves.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from rr.train.precision import with_float32_master


def learning_rate_schedule(optim, total_steps: int) -> optax.Schedule:
  warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=optim.lr * optim.min_lr_ratio)


def make_optimizer(optim, total_steps: int, param_dtype: str) -> optax.GradientTransformation:
  """`param_dtype` is the params' storage dtype (config.model.param_dtype); below float32 the update is
  computed on a float32 master copy."""
  schedule = learning_rate_schedule(optim, total_steps)
  optimizer = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
  if optim.clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(optim.clip_norm), optimizer)
  if jnp.dtype(param_dtype) != jnp.float32:
    optimizer = with_float32_master(optimizer)
  return optimizer
