"""The one step factory (rr.train.step.make_train_step) with a toy objective written here: it takes the
objective's gradient, applies the optimiser, and skips an update whose loss, gradient or metric is not finite,
naming the term; SFT goes through the same factory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rr import sharding
from rr.train.step import make_train_step


def _toy_objective(params, batch, frozen, rng):
  """loss = mean over rows of (w . x - frozen)^2 / 2, so d loss / d w = mean((w . x - frozen) x); `draw` reports
  the step's rng (no gradient)."""
  residual_B = batch["x"] @ params["w"] - (frozen["target"] if "target" in frozen else 0.0)
  return 0.5 * jnp.mean(residual_B ** 2), {"residual": jnp.mean(residual_B), "draw": jax.random.uniform(rng)}


def _setup(takes_frozen):
  mesh = sharding.make_mesh()
  optimizer = optax.sgd(0.5)
  params = {"w": jnp.array([1.0, -2.0, 0.5])}
  state = {"step": jnp.array(0, jnp.int32), "params": params, "opt_state": optimizer.init(params)}
  shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
  frozen_sh = {"target": sharding.replicated(mesh)} if takes_frozen else None  # None: the step gets frozen={}
  step = make_train_step(_toy_objective, optimizer, shardings, mesh, frozen_shardings=frozen_sh)
  return step, state


def test_a_toy_objective_trains_by_its_hand_gradient():
  step, state = _setup(takes_frozen=True)
  x = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], np.float32)
  new, metrics = step(jax.tree.map(jnp.copy, state), {"x": jnp.asarray(x)}, {"target": jnp.float32(1.0)})
  w = np.array([1.0, -2.0, 0.5])
  residual = x @ w - 1.0  # [1.0, -2.5]
  grad = (residual[:, None] * x).mean(0)  # [0.5, -1.25, -0.75]
  np.testing.assert_allclose(np.asarray(new["params"]["w"]), w - 0.5 * grad, rtol=1e-6)
  assert float(metrics["loss"]) == np.float32(0.5 * np.mean(residual ** 2))
  assert float(metrics["residual"]) == np.float32(residual.mean())  # the objective's own metric comes through
  assert float(metrics["grad_norm"]) == np.float32(np.linalg.norm(grad))
  assert bool(metrics["finite"]) and int(new["step"]) == 1
  # The objective's rng is a function of (seed, optimiser step): the same step draws the same, the next another.
  _, again = step(jax.tree.map(jnp.copy, state), {"x": jnp.asarray(x)}, {"target": jnp.float32(1.0)})
  _, later = step(new, {"x": jnp.asarray(x)}, {"target": jnp.float32(1.0)})
  assert float(again["draw"]) == float(metrics["draw"]) != float(later["draw"])


def test_a_non_finite_step_leaves_the_state_and_names_the_term():
  step, state = _setup(takes_frozen=False)
  x = np.array([[1.0, np.inf, 2.0], [0.0, 1.0, 1.0]], np.float32)
  new, metrics = step(jax.tree.map(jnp.copy, state), {"x": jnp.asarray(x)}, {})
  assert not bool(metrics["finite"])
  assert {k for k, v in metrics["finite_terms"].items() if not bool(v)} >= {"loss", "grad_norm", "residual"}
  np.testing.assert_array_equal(np.asarray(new["params"]["w"]), np.asarray(state["params"]["w"]))
  assert int(new["step"]) == 0
