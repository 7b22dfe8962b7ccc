"""AdamW with linear warm-up, cosine decay and global-norm clipping, from the optim config."""

from __future__ import annotations

import optax


def learning_rate_schedule(optim, total_steps: int) -> optax.Schedule:
  warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim.lr, warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1), end_value=optim.lr * optim.min_lr_ratio)


def make_optimizer(optim, total_steps: int) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(optim, total_steps)
  adamw = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
  if optim.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(optim.clip_norm), adamw)
  return adamw
