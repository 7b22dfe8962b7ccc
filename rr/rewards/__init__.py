"""Rewards: text rewards scored safely on the host, the registry of their config names (`register`), jittable
combinators, and advantage estimators."""

from __future__ import annotations

from rr.rewards.advantages import (GroupSizeError, check_group_size, compute_advantages, gae,
                                   group_advantages, reinforce_pp_advantages, rloo_advantages)
from rr.rewards.base import (RewardFailure, RolloutReward, RolloutView, RowReward, TextReward, TokenReward,
                             reward_metrics, reward_name, score_rewards)
from rr.rewards.builtin import (calibration, correctness, format_reward, is_correct, length_penalty,
                                overlong_shaping, sampled_length, split_confidence, stated_confidence,
                                step_correctness)
from rr.rewards.combine import COMBINE_MODES, Combination, gate, gated_sum, normalize_then_sum, weighted_sum
# Modules that register rewards when imported
from rr.rewards import info_gain, shaping, understanding  # noqa: F401  pylint: disable=unused-import
from rr.rewards.registry import (RewardRegistryError, build_reward, closest_name, register,
                                 reward_names, unregister)

__all__ = ["GroupSizeError", "check_group_size", "compute_advantages", "gae", "group_advantages",
           "reinforce_pp_advantages", "rloo_advantages",
           "RewardFailure", "RolloutReward", "RolloutView", "RowReward", "TextReward", "TokenReward", "calibration",
           "correctness",
           "format_reward", "gate", "gated_sum", "is_correct", "length_penalty", "normalize_then_sum",
           "overlong_shaping", "reward_metrics", "reward_name", "sampled_length", "score_rewards",
           "split_confidence", "stated_confidence", "step_correctness", "weighted_sum",
           "COMBINE_MODES", "Combination", "info_gain", "shaping", "understanding",
           "RewardRegistryError", "build_reward", "closest_name", "register", "reward_names", "unregister"]
