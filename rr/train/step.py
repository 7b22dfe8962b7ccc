"""The one train-step factory: an objective in, one jitted step with in/out shardings over the mesh out
(this is pjit), for every trainer.

`objective(trainable, batch, frozen, rng) -> (loss, metrics)` says what to minimise (rr.train.objectives: SFT's
NLL, the GRPO family's surrogate, the KL to a frozen reference, PPO's value term, later distillation, as sums of
terms). Everything else is the same for all of them and lives here once: gradients of the trainable
trees (rr.train.state.trainable: the params, plus a value head), the optimiser (clipping and the float32
master inside it), donation of the state, and the non-finite guard: a step whose loss, gradient norm or any
metric is not finite leaves params and optimiser state unchanged and says which term it was.

The same compiled step serves one CPU, 8 forced CPU devices, a GPU or a TPU slice; only the mesh changes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from rr import sharding
from rr.train.precision import float32_norm
from rr.train.state import trainable, untrained, with_trainable

Objective = Callable[[Any, Any, Any, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation, shardings: dict[str, Any],
                    mesh: jax.sharding.Mesh, frozen_shardings: dict | None = None, seed: int = 0) -> Callable:
  """`step(state, batch, frozen) -> (state, metrics)`, jitted with shardings and the state donated.

  `frozen`: the frozen models' params by name ({} or e.g. {"reference": params}), placed by `frozen_shardings`
  (a dict of their shardings by the same names). The objective's rng is a pure function of (seed, optimiser
  step), so a resumed run draws the same. metrics hold the objective's own plus `loss`, `grad_norm`, `finite`
  and `finite_terms` (which term was not finite).
  """

  def step(state, batch, frozen):
    rng = jax.random.fold_in(jax.random.key(seed), state["step"])
    frozen = {**frozen, **untrained(state)}  # e.g. the weights LoRA adapters sit on
    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(trainable(state), batch, frozen, rng)
    grad_norm = float32_norm(grads)
    finite = {name: jnp.all(jnp.isfinite(value)) for name, value in
              (("loss", loss), ("grad_norm", grad_norm), *metrics.items())}
    ok = jnp.all(jnp.stack(list(finite.values())))
    updates, opt_state = optimizer.update(grads, state["opt_state"], trainable(state))
    new = {**with_trainable(state, optax.apply_updates(trainable(state), updates)), "step": state["step"] + 1,
           "opt_state": opt_state}
    state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    return state, {**metrics, "loss": loss, "grad_norm": grad_norm, "finite": ok, "finite_terms": finite}

  in_shardings = (shardings, sharding.batch_sharding(mesh), frozen_shardings or {})
  return jax.jit(step, in_shardings=in_shardings, out_shardings=(shardings, sharding.replicated(mesh)),
                 donate_argnums=0)
