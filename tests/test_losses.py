"""The SFT loss against log-probabilities computed by hand."""

import math

import jax.numpy as jnp
import numpy as np

from rr.losses import completion_nll, token_log_probs


def test_token_log_probs_matches_hand_softmax():
  logits = np.array([[[1.0, 2.0, 0.0], [0.5, 0.5, 3.0]]], np.float32)
  targets = np.array([[1, 0]])
  z0 = math.log(math.exp(1) + math.exp(2) + math.exp(0))
  z1 = math.log(2 * math.exp(0.5) + math.exp(3))
  want = [[2.0 - z0, 0.5 - z1]]
  np.testing.assert_allclose(token_log_probs(jnp.asarray(logits), jnp.asarray(targets)), want, rtol=1e-6)


def test_completion_nll_scores_next_tokens_under_the_mask_only():
  # Row 0: tokens [a, b, c]; the mask marks position 1, whose target is tokens[2] = 2.
  # Row 1: tokens [c, a, b]; the mask marks positions 0 and 1 (targets 0 and 1).
  logits = np.zeros((2, 3, 3), np.float32)
  logits[0, 1] = [0.0, 1.0, 2.0]
  logits[1, 0] = [3.0, 0.0, 0.0]
  logits[1, 1] = [0.0, 0.0, 0.0]
  logits[0, 0] = [9.0, -9.0, 4.0]  # unmasked: must not count
  tokens = np.array([[0, 1, 2], [2, 0, 1]])
  mask = np.array([[0, 1, 0], [1, 1, 0]], np.float32)

  def nll(row, target):
    return math.log(sum(math.exp(v) for v in row)) - row[target]

  want = (nll([0.0, 1.0, 2.0], 2) + nll([3.0, 0.0, 0.0], 0) + nll([0.0, 0.0, 0.0], 1)) / 3
  loss, count = completion_nll(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(mask))
  assert float(count) == 3
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
