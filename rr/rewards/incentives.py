"""Does the best expected reward rise with accuracy? The check `rr.train.grpo` runs on config.rl's weights.

RL climbs the expected reward, so a weighting under which some wrong answers are worth more than right ones
teaches the policy to be wrong. A policy at pass rate p that states confidence c (or states none) expects, from
each reward that reads correctness or confidence, a closed form in (p, c) (EXPECTED below); rewards that read
neither are constant in p and drop out. With

  V(p) = max over c in [0, 1], and over stating no confidence, of sum_k w_k E[R_k | p, c],

the weights are sound when V is strictly increasing on [0, 1]. V is evaluated on a grid of p and c (GRID_POINTS
each); the forms used here are proper in c or linear in c, so their best c lies on the grid or at an end.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

GRID_POINTS = 401  # p and c step 0.0025
RISE_TOL = 1e-12  # V must rise by more than this between neighbouring grid points (float64 noise is ~1e-16)


def _brier(p, c):
  """E[(c - y)^2] for y ~ Bernoulli(p)."""
  return p * (1.0 - c) ** 2 + (1.0 - p) * c ** 2


# reward name -> E[R | pass rate p, stated confidence c] (numpy-broadcasting), see rr.rewards.builtin.calibration
EXPECTED: dict[str, Callable] = {
    "correctness": lambda p, c: p + 0.0 * c,
    "calibration": lambda p, c: p - _brier(p, c),  # RLCR: y - (c - y)^2
    "calibration_brier": lambda p, c: 1.0 - 2.0 * _brier(p, c),
    "calibration_linear": lambda p, c: c * (2.0 * p - 1.0),
}
# reward name -> E[R | pass rate p] when no usable confidence is stated (every calibration form gives -1)
UNSTATED: dict[str, Callable] = {
    "correctness": lambda p: p,
    "calibration": lambda p: -1.0 + 0.0 * p,
    "calibration_brier": lambda p: -1.0 + 0.0 * p,
    "calibration_linear": lambda p: -1.0 + 0.0 * p,
}


def reads_accuracy(weights: Mapping[str, float]) -> bool:
  """True when some reward that depends on correctness or confidence has a non-zero weight; otherwise the total
  does not depend on accuracy at all (a length- or format-only run) and there is nothing to check."""
  return any(name in EXPECTED and w != 0.0 for name, w in weights.items())


def best_expected_reward(weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
  """(p grid, V(p)): the best expected weighted total at each pass rate, over one shared stated confidence (all
  calibration rewards read the same line) or none. `weights` maps reward names to weights; unknown names are
  rewards that do not read accuracy and are left out."""
  p = np.linspace(0.0, 1.0, GRID_POINTS)
  p_Px1, c_1xC = p[:, None], p[None, :]
  stated_PxC = np.zeros((p.size, p.size))
  unstated_P = np.zeros(p.size)
  for name, w in weights.items():
    if name in EXPECTED:
      stated_PxC += w * EXPECTED[name](p_Px1, c_1xC)
      unstated_P += w * UNSTATED[name](p)
  return p, np.maximum(stated_PxC.max(axis=1), unstated_P)


def falling_ranges(weights: Mapping[str, float]) -> list[tuple[float, float]]:
  """The accuracy intervals [lo, hi] on which V does not rise (merged neighbours); [] when V is strictly
  increasing, or when no weighted reward reads accuracy."""
  if not reads_accuracy(weights):
    return []
  p, v = best_expected_reward(weights)
  flat = np.diff(v) <= RISE_TOL
  ranges: list[tuple[float, float]] = []
  for i in np.flatnonzero(flat):
    lo, hi = float(p[i]), float(p[i + 1])
    if ranges and ranges[-1][1] == lo:
      ranges[-1] = (ranges[-1][0], hi)
    else:
      ranges.append((lo, hi))
  return ranges


def correctness_weight_that_works(weights: Mapping[str, float], limit: float = 100.0) -> float | None:
  """The smallest positive correctness weight, in steps of 0.05 up to `limit`, that makes V strictly increasing
  with the other weights kept; None if none does."""
  for w in np.arange(0.05, limit + 1e-9, 0.05):
    if not falling_ranges({**weights, "correctness": float(round(w, 2))}):
      return float(round(w, 2))
  return None
