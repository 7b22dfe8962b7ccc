"""Losses as pure functions of arrays: no model, no optimiser, nothing on the host."""

from rr.losses.chunked import chunked_completion_nll, lm_head_weight
from rr.losses.distill import (DIVERGENCES, distillation_loss, sparse_distillation_loss, sparse_token_divergence,
                               token_divergence)
from rr.losses.policy import (PolicyLossConfig, aggregate, kl_gradient_term, kl_per_token, masked_mean, policy_loss,
                              reward_to_go, scale_logits, sequence_kl, token_entropy, value_loss)
from rr.losses.preference import completion_log_probs, dpo_loss
from rr.losses.sft import completion_nll, next_token_targets, sequence_log_probs, token_log_probs

__all__ = ["DIVERGENCES", "PolicyLossConfig", "aggregate", "chunked_completion_nll", "completion_log_probs",
           "completion_nll", "dpo_loss",
           "distillation_loss", "kl_gradient_term", "kl_per_token", "lm_head_weight", "masked_mean",
           "next_token_targets", "policy_loss", "reward_to_go", "scale_logits", "sequence_kl", "sequence_log_probs",
           "sparse_distillation_loss", "sparse_token_divergence", "token_divergence", "token_entropy",
           "token_log_probs", "value_loss"]
