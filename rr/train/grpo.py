"""The GRPO family: sample G completions per prompt, score them, turn rewards into advantages, and take
`rl.epochs` clipped policy-gradient steps on each batch of rollouts (`config.trainer = "grpo"`).

Phases as in the SFT loop: inputs, mesh, model and optimiser, restore (or start from
`config.init_checkpoint`), evaluation before training, the loop, evaluation after. Rollout prompts and
sampling keys are pure functions of (seed, step, round), so a resumed run draws the same rollouts.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from rr.config import ConfigError, save_run_config
from rr.data import encode_prompts
from rr.eval import evaluate_accuracy
from rr.losses import PolicyLossConfig
from rr.models import Decoder
from rr.rewards import (COMBINE_MODES, Combination, GroupSizeError, build_reward, check_group_size,
                        closest_name, incentives, reward_name, reward_names)
from rr.data.inputs import load_inputs
from rr.train.interrupt import StopRequest
from rr.train.metrics import MetricWriter
from rr.train.optimizer import learning_rate_schedule, make_optimizer
from rr.train.rl_step import RLStep
from rr.train.setup import build_mesh, build_model_config, count_params
from rr.train.state import open_run, starting_state

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
  if rl.advantage == "ppo" and not (0.0 <= rl.gae_gamma <= 1.0 and 0.0 <= rl.gae_lambda <= 1.0
                                    and rl.value_clip > 0.0 and rl.vf_coef >= 0.0):
    raise ConfigError(f"config.rl: PPO needs gae_gamma and gae_lambda in [0, 1] (got {rl.gae_gamma}, "
                      f"{rl.gae_lambda}), value_clip > 0 (got {rl.value_clip}) and vf_coef >= 0 (got {rl.vf_coef})")


def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Reinforces the student on the configured task and writes reports into `workdir`; returns the summary."""
  start = time.time()
  rl = config.rl
  reward_config(rl)  # bad reward settings fail here, before any data is loaded
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  reward_fns, reward_weights = build_rewards(rl, tokenizer)
  reward_combine = build_combination(rl, reward_fns, reward_weights)
  loss_cfg = policy_loss_config(rl)
  batch_size = rl.prompts_per_step * rl.group_size
  try:
    check_group_size(batch_size, rl.group_size)
  except GroupSizeError as e:
    raise ConfigError(str(e)) from e
  if rl.group_size < 2 and rl.advantage != "ppo":
    raise ConfigError(f"config.rl.group_size={rl.group_size}: group advantages need at least 2 completions "
                      "(rl.advantage='ppo' does not)")
  check_group_filters(rl)
  prompts = encode_prompts(tokenizer, [e.question for e in inputs.train])
  prompt_width = -(-max(len(p) for p in prompts) // 8) * 8
  width = prompt_width + rl.max_new_tokens
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, batch_size, "config.rl.prompts_per_step * config.rl.group_size")
  # ---------------------------------------------------------------- model and optimiser
  model = Decoder(model_cfg)
  total_steps = config.train.steps
  optimizer = make_optimizer(config.optim, total_steps * rl.epochs, model_cfg.param_dtype)
  schedule = learning_rate_schedule(config.optim, total_steps * rl.epochs)
  # ---------------------------------------------------------------- restore
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh,
                                                           tokenizer.vocab_size, value_head=rl.advantage == "ppo")
  ref_params = None  # the frozen reference: the starting params, rebuilt the same way on resume
  if loss_cfg.kl_beta > 0:
    ref_params = starting_state(model_cfg, optimizer, mesh, config.seed, record, config.init_checkpoint,
                                hf_path=config.model.hf_path)[0]["params"]
  if jax.process_index() == 0:
    save_run_config(config, workdir)
  # ---------------------------------------------------------------- loop
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  rl_step = RLStep(rl, model, optimizer, loss_cfg, shardings, mesh, tokenizer, prompts, inputs.train, reward_fns,
                   reward_weights, width, config.seed, reward_combine=reward_combine)
  sampler = rl_step.sampler

  def evaluate(params) -> dict:
    if not eval_examples:
      return {}
    return evaluate_accuracy(sampler, params, tokenizer, eval_examples, max_new_tokens=config.eval.max_new_tokens,
                             batch_size=config.eval.batch_size)

  step = int(jax.device_get(state["step"])) // rl.epochs
  writer.resume(None if resumed is None else step)  # rows a crash logged past the checkpoint: set aside
  first_eval = {}
  if resumed is None:
    first_eval = evaluate(state["params"])
    if first_eval:
      first_eval["eval/accuracy_initial"] = first_eval["eval/accuracy"]
      writer.write(step, first_eval)
  warned_flat = False
  last_train, last_eval, interrupted = {}, {}, False
  with StopRequest() as stop, tqdm(total=total_steps, initial=step, desc="grpo", dynamic_ncols=True,
                                   file=sys.stderr, mininterval=2.0) as bar:
    while step < total_steps:
      state, result = rl_step(state, step, ref_params)
      step += 1
      bar.update(1)
      for failure in result.failures[:5]:
        bar.write(f"rr: reward {failure.reward} failed on row {failure.row}: {failure.error}")
      if result.all_groups_equal and not warned_flat:
        bar.write(f"rr: step {step}: every group had equal rewards, so no learning signal (zero advantages); "
                  "this is normal early on and warned once")
        warned_flat = True
      if not result.finite:
        bar.write(f"rr: step {step}: non-finite {', '.join(result.bad_terms)}; the update was skipped and the run "
                  f"stops with its last good checkpoint in {checkpoints.directory}")
        interrupted = True
        break
      last_train = dict(result.metrics)
      if step % config.train.log_every == 0 or step == total_steps:  # the schedule is read only when logged
        last_train["train/lr"] = float(schedule(step * rl.epochs - 1))
        writer.write(step, last_train)
        bar.set_postfix(reward=f"{last_train['train/reward']:.3f}")
      if config.train.eval_every and step % config.train.eval_every == 0 and step < total_steps:
        last_eval = evaluate(state["params"])
        writer.write(step, last_eval)
        bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()))
      if step % config.train.checkpoint_every == 0:
        checkpoints.save(step, state, record)  # named by loop step, as in every trainer
      if stop.requested or (should_stop is not None and should_stop(step)):
        interrupted = step < total_steps
        break
  # ---------------------------------------------------------------- final evaluation and reports
  # A non-finite step was skipped inside the jitted step, so this state is the last good one.
  checkpoints.save(step, state, record)
  checkpoints.close()
  if not interrupted:
    last_eval = evaluate(state["params"])
    if last_eval:
      writer.write(step, last_eval)
  if last_train and "train/lr" not in last_train:  # stopped between two logged steps
    last_train["train/lr"] = float(schedule(step * rl.epochs - 1))
  summary = {"step": step, "finished": not interrupted, "wall_seconds": time.time() - start,
             "num_params": count_params(state["params"]), **last_train, **last_eval}
  if "eval/accuracy_initial" in first_eval:
    summary["eval/accuracy_initial"] = first_eval["eval/accuracy_initial"]
  writer.write_summary(summary)
  writer.plot_curves(("train/reward", "train/loss", "eval/accuracy"))
  writer.close()
  return summary

