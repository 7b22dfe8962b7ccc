"""What config.rl says about rewards, the policy loss and group filters, checked before any data is loaded:
every mistake here is one ConfigError that names the key and the fix (the RL trainer, rr.train.grpo, and the
stages runner call these first)."""

from __future__ import annotations

import numpy as np

from rr.config import ConfigError
from rr.losses import PolicyLossConfig
from rr.rewards import COMBINE_MODES, Combination, build_reward, closest_name, incentives, reward_name, reward_names

# Reward names resolve in rr.rewards.registry, built-ins and users' rewards alike; these two name the roles "gate"
# reads.
OUTCOME_REWARD = "correctness"  # what `rl.reward_combine = "gate"` gates on
PROCESS_REWARDS = ("step_correctness",)  # rewards on the rationale, which "gate" counts only for right answers


def reward_config(rl) -> tuple[list[str], np.ndarray]:
  """(reward names, weights) from config.rl, after every check that needs no data: known names, one weight
  each, a known `rl.reward_combine` with the rewards it needs, and weights under which the best expected
  reward rises with accuracy."""
  names = [n.strip() for n in rl.rewards.split(",") if n.strip()]
  known = reward_names()
  unknown = [n for n in names if n not in known]
  if not names or unknown:
    close = [f"{closest_name(n)!r} for {n!r}" for n in unknown if closest_name(n)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"config.rl.rewards={rl.rewards!r}: unknown {unknown or 'empty list'}{hint}; choose from "
                      f"{known}, or register your own with rr.rewards.register in a module your config file imports")
  try:
    weights = np.array([float(w) for w in rl.reward_weights.split(",")], np.float32)
  except ValueError:
    raise ConfigError(f"config.rl.reward_weights={rl.reward_weights!r} must be comma-separated numbers") from None
  if len(weights) != len(names):
    raise ConfigError(f"config.rl.reward_weights has {len(weights)} weights for {len(names)} rewards "
                      f"({', '.join(names)}); give one weight per reward")
  check_reward_combine(rl, names)
  check_rises_with_accuracy(names, weights)
  return names, weights


def check_reward_combine(rl, names: list[str]) -> None:
  if rl.reward_combine not in COMBINE_MODES:
    raise ConfigError(f"config.rl.reward_combine={rl.reward_combine!r} is not one of {COMBINE_MODES}")
  if rl.reward_combine == "gate" and (OUTCOME_REWARD not in names or not set(PROCESS_REWARDS) & set(names)):
    raise ConfigError(f"config.rl.reward_combine='gate' counts a process reward ({', '.join(PROCESS_REWARDS)}) "
                      f"only when the outcome ({OUTCOME_REWARD}) is right, but config.rl.rewards={rl.rewards!r} "
                      f"lacks {' and '.join(n for n in (OUTCOME_REWARD, PROCESS_REWARDS[0]) if n not in names)}; "
                      "e.g. rl.rewards=format,correctness,step_correctness with rl.reward_weights=1,1,1")


def _weight_text(weights: dict[str, float]) -> str:
  return ", ".join(f"{name}={w:g}" for name, w in weights.items())


def check_rises_with_accuracy(names: list[str], weights: np.ndarray) -> None:
  """Refuses weights under which the best expected reward V(p) (rr.rewards.incentives) is not strictly
  increasing in the pass rate p: RL would then pay the policy for wrong answers on that range. Rewards that
  read neither correctness nor confidence are constant in p and do not count. Under normalize_then_sum the
  check reads the weights as if the raw rewards were summed: a proxy, since normalising rescales each column."""
  by_name: dict[str, float] = {}
  for name, w in zip(names, weights):
    by_name[name] = by_name.get(name, 0.0) + float(w)
  falling = incentives.falling_ranges(by_name)
  if not falling:
    return
  where = ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in falling)
  fix = incentives.correctness_weight_that_works(by_name)
  hint = "the RLCR form 'calibration' (correctness plus a proper Brier term) rises with accuracy at any positive weight"
  if fix is not None:
    fixed = [fix if n == OUTCOME_REWARD else by_name[n] for n in names]
    hint += (f"; or keep these rewards with a correctness weight of at least {fix:g}"
             + (f" (rl.reward_weights={','.join(f'{w:g}' for w in fixed)})" if OUTCOME_REWARD in names else
                f" (add '{OUTCOME_REWARD}' to rl.rewards)"))
  raise ConfigError(f"config.rl.rewards and reward_weights ({_weight_text(by_name)}): the best expected reward "
                    f"(over any stated confidence) does not rise with accuracy, for accuracy in {where}, so RL would "
                    f"not pay the policy for being right there. What works: {hint}")


def build_rewards(rl, tokenizer) -> tuple[list, np.ndarray]:
  """(reward functions, weights) for config.rl; ConfigError (see `reward_config`) before any sampling."""
  names, weights = reward_config(rl)
  try:
    return [build_reward(n, rl, tokenizer) for n in names], weights
  except ValueError as e:
    raise ConfigError(f"config.rl: {e}") from e


def build_combination(rl, reward_fns, weights: np.ndarray) -> Combination:
  """The `rl.reward_combine` combination over these rewards' columns, weights applied as `Combination` says
  (gate: each reward keeps its weight, process rewards are multiplied by the correctness column first)."""
  names = [reward_name(f) for f in reward_fns]
  if rl.reward_combine != "gate":
    return Combination(rl.reward_combine, weights, group_size=rl.group_size)
  try:
    return Combination("gate", weights, outcome_column=names.index(OUTCOME_REWARD),
                       process_columns=tuple(i for i, n in enumerate(names) if n in PROCESS_REWARDS))
  except ValueError as e:
    raise ConfigError(f"config.rl.reward_combine='gate': {e}") from e


def policy_loss_config(rl) -> PolicyLossConfig:
  try:
    return PolicyLossConfig(eps_low=rl.eps_low, eps_high=rl.eps_high, ratio_level=rl.ratio_level,
                            clip_mode=rl.clip_mode, dual_clip_c=rl.dual_clip_c, aggregation=rl.aggregation,
                            max_completion_len=rl.max_new_tokens, kl_beta=rl.kl_beta,
                            kl_estimator=rl.kl_estimator, kl_mode=rl.kl_mode, entropy_coef=rl.entropy_coef,
                            mask_truncated=rl.mask_truncated)
  except ValueError as e:
    raise ConfigError(f"config.rl: {e}") from e


def check_group_filters(rl) -> None:
  if not 0.0 <= rl.pass_rate_min <= rl.pass_rate_max <= 1.0:
    raise ConfigError(f"config.rl.pass_rate_min={rl.pass_rate_min} and pass_rate_max={rl.pass_rate_max} must "
                      "satisfy 0 <= min <= max <= 1")
  filtering = rl.pass_rate_min > 0.0 or rl.pass_rate_max < 1.0
  if filtering and "correctness" not in [n.strip() for n in rl.rewards.split(",")]:
    raise ConfigError(f"config.rl.pass_rate_min/max filter on the correctness reward, but config.rl.rewards="
                      f"{rl.rewards!r} does not include it; add 'correctness' (weight 0 is fine)")
  if (filtering or rl.dynamic_sampling) and rl.max_sampling_rounds < 1:
    raise ConfigError(f"config.rl.max_sampling_rounds={rl.max_sampling_rounds} must be at least 1")
  if (filtering or rl.dynamic_sampling) and rl.group_size < 2:
    raise ConfigError(f"config.rl.group_size={rl.group_size}: dynamic sampling and the pass-rate filter judge "
                      "groups of completions; use group_size >= 2 or turn them off")
