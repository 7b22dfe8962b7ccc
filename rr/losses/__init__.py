"""Losses as pure functions of arrays: no model, no optimiser, nothing on the host."""

from rr.losses.sft import completion_nll, token_log_probs

__all__ = ["completion_nll", "token_log_probs"]
