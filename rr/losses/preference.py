"""Preference losses on (chosen, rejected) completion pairs: DPO (Rafailov et al., 2305.18290).

Inputs are sequence log-probs: the sum of log p(token) over a completion's tokens (eos included), one number per
sequence, for the trained policy and for a frozen reference. The implicit reward of a completion is
beta * (log pi(y) - log ref(y)); DPO's loss is -log sigmoid of the chosen's reward minus the rejected's. The
rewards in the metrics are stop-gradient copies (TRL's names: rewards/chosen, rewards/rejected,
rewards/accuracies, rewards/margins, logps/chosen, logps/rejected).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def completion_log_probs(logp_BxT: jax.Array, mask_BxT: jax.Array) -> jax.Array:
  """[B] sums of the per-token log-probs over each row's masked tokens. Unmasked positions are set to 0 before
  the sum (not multiplied by 0), so a -inf or NaN at a padding position never reaches the sum or its gradient."""
  return jnp.where(mask_BxT > 0, logp_BxT.astype(jnp.float32), 0.0).sum(axis=-1)


def dpo_loss(policy_chosen_P: jax.Array, policy_rejected_P: jax.Array, reference_chosen_P: jax.Array,
             reference_rejected_P: jax.Array, beta: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(mean over the P pairs of -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), metrics).

  A margin of 0 (the policy is still the reference) costs log 2 per pair; the gradient of each pair's loss in
  pi_c is -beta * sigmoid(-beta * margin), in pi_r the opposite, so pairs the policy already orders well weigh
  little. The reference log-probs take no gradient.
  """
  reference_chosen_P = jax.lax.stop_gradient(reference_chosen_P)
  reference_rejected_P = jax.lax.stop_gradient(reference_rejected_P)
  chosen_P = beta * (policy_chosen_P - reference_chosen_P)
  rejected_P = beta * (policy_rejected_P - reference_rejected_P)
  margin_P = chosen_P - rejected_P
  loss = -jax.nn.log_sigmoid(margin_P).mean()
  sg = jax.lax.stop_gradient
  metrics = {"rewards/chosen": sg(chosen_P).mean(), "rewards/rejected": sg(rejected_P).mean(),
             "rewards/accuracies": (sg(margin_P) > 0).astype(jnp.float32).mean(),
             "rewards/margins": sg(margin_P).mean(),
             "logps/chosen": sg(policy_chosen_P).mean(), "logps/rejected": sg(policy_rejected_P).mean()}
  return loss, metrics
