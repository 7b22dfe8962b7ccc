"""The RL trainer (`config.trainer = "grpo"`): the GRPO family and PPO as compositions of the core's parts.

Each step: the rollout collector samples, scores and filters groups (rr.train.collector, prompts from the
prompt source); the jitted prepare step turns rewards into advantages on the device (rr.train.advantages, the
estimator `rl.advantage` names, with the KL penalty of rl.kl_mode="reward" and the old log-probs of mu > 1);
then `rl.epochs` updates of the objective (rr.train.objectives: policy, plus kl / entropy / value as the config
asks). PPO is the "ppo" estimator (a value head and GAE) plus the "value" term; nothing here branches on it.
`train.loss_terms=policy,privileged_kd` adds privileged self-distillation (rr.train.privileged): the collector
lays out the self-teacher's rows of the chosen completions.
Phases as every trainer: inputs, mesh, model and optimiser, restore (or start from `config.init_checkpoint`),
then rr.train.loop.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

import jax
import numpy as np
import optax

from rr.config import ConfigError, save_run_config
from rr.data import encode_prompts
from rr.data.inputs import load_inputs
from rr.eval import evaluate_accuracy
from rr.models import Decoder
from rr.rewards import (Combination, GroupSizeError, RolloutReward, check_group_size, info_gain, reward_metrics,
                        reward_name, understanding)
from rr.sampler import Greedy, Sampler
from rr.train import TRAINERS, ppo  # ppo registers the "ppo" advantage estimator
from rr.train import privileged  # registers the "privileged_kd" objective term
from rr.train.privileged import policy_question
from rr.train.advantages import ESTIMATORS, make_prepare
from rr.train.batch import put_batch
from rr.train.collector import RolloutCollector, Rollouts
from rr.train.groups import filter_names, make_keep
from rr.train.loop import StepOutput, Trainer, run_loop
from rr.train.objectives import Parts, make_objective, term_names
from rr.train.optimizer import learning_rate_schedule, make_optimizer
# The config checks live in rl_config; these names stay importable from here for callers that used them.
from rr.train.rl_config import (build_combination, build_rewards, check_group_filters, policy_loss_config,
                                reward_config)
from rr.train.setup import build_mesh, build_model_config
from rr.train.sft import teacher_model
from rr.train.frozen import load_frozen
from rr.train.guide import make_guide
from rr.train.prefix_rft import make_prefixer
from rr.train.sft_steps import check_sft_steps, make_sft_steps
from rr.train.sources import make_prompt_source
from rr.train.state import (POLICY_EMA, lora_settings, make_ema_step, open_run, policy_params, starting_state,
                            trained_dtype)
from rr.train.step import check_micro_batches, make_train_step

# Counts every step reports ("train/<name>") and the run totals ("train/total_<name>", "total/<name>" in the
# summary): completion tokens sampled (what rl.max_sampled_tokens budgets) and demonstration tokens given or trained
COUNTS = ("sampled_tokens", "demo_tokens")

__all__ = ["GRPOStep", "build_combination", "build_rewards", "policy_loss_config", "reward_config", "run"]


def mean_group_std(total_N: np.ndarray, valid_N: np.ndarray, group_size: int) -> float:
  """TRL's `reward_std`: the mean over groups of the sample std (ddof 1, torch's default) of each group's valid
  rewards; a group with fewer than two valid rewards has none and is left out (NaN when no group has one)."""
  stds = []
  for rewards, valid in zip(total_N.reshape(-1, group_size), valid_N.reshape(-1, group_size)):
    if valid.sum() >= 2:
      stds.append(float(np.std(rewards[valid], ddof=1)))
  return float(np.mean(stds)) if stds else float("nan")


class GRPOStep:
  """`step(state, n) -> StepOutput` for loop step n: collect rollouts, prepare them, take rl.epochs updates.

  The loop (run below) and benchmarks/grpo_step.py call the same object, so the benchmark times the trainer's
  real path. `frozen` holds the frozen models' params by name ({"reference": params} when a term or the KL
  penalty needs the reference), `frozen_models` their architectures, `frozen_shardings` their shardings.
  """

  def __init__(self, config, model: Decoder, optimizer: optax.GradientTransformation, shardings: dict,
               mesh: jax.sharding.Mesh, tokenizer, prompts: Sequence[Sequence[int]], examples: Sequence,
               reward_fns: Sequence, combine: Combination, width: int, frozen: dict | None = None,
               frozen_models: dict | None = None, frozen_shardings: dict | None = None):
    rl = config.rl
    self.rl, self.mesh, self.frozen = rl, mesh, frozen or {}
    self.reward_fns = list(reward_fns)
    for reward_fn in self.reward_fns:  # model-scored rewards place their models on the run's mesh, once
      if isinstance(reward_fn, RolloutReward):
        reward_fn.bind(mesh, tokenizer.vocab_size, functools.partial(load_frozen, mesh=mesh,
                                                                    vocab_size=tokenizer.vocab_size))
    make_estimator = ESTIMATORS.get(rl.advantage)
    loss_cfg = policy_loss_config(rl)
    parts = Parts(model, frozen_models or {}, temperature=rl.temperature,
                  shared_prompt=(rl.group_size, width - rl.max_new_tokens), loss_cfg=loss_cfg,
                  vocab_size=tokenizer.vocab_size, completion_width=rl.max_new_tokens)
    estimator = make_estimator(config, parts)
    self.estimator = estimator
    if estimator.value_head:
      parts = Parts(**{**parts.__dict__, "value_cfg": ppo.value_config(rl)})
    self.terms = term_names(config, "grpo", value_head=estimator.value_head)
    self_teacher = (privileged.PrivilegedRows(tokenizer, examples, config.distill.privileged_context,
                                              rl.max_new_tokens) if "privileged_kd" in self.terms else None)
    self.sampler = Sampler(model.cfg, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, mesh=mesh)
    self.source = make_prompt_source(config, examples)
    filtering = bool(filter_names(rl))
    self.collector = RolloutCollector(rl, self.sampler, tokenizer, prompts, examples, self.source, reward_fns,
                                      combine, make_keep(rl), width, config.seed,
                                      rl.max_sampling_rounds if filtering else 1, self_teacher,
                                      prefixer=make_prefixer(config, tokenizer, examples, width,
                                                             longest_prompt=self.sampler.prompt_buckets[-1]),
                                      guide=make_guide(config, tokenizer, examples, width,
                                                       longest_prompt=self.sampler.prompt_buckets[-1]))
    self.prepare = make_prepare(config, parts, estimator, shardings, mesh, frozen_shardings)
    self.update = make_train_step(make_objective(config, parts, self.terms), optimizer, shardings, mesh,
                                  frozen_shardings, seed=config.seed, micro_batches=config.train.micro_batches)
    # SFT steps on demonstrations between the RL steps (rl.sft_steps: ReLIFT, SASR), or None
    self.sft_steps = make_sft_steps(config, model, optimizer, shardings, mesh, tokenizer, examples)
    # info_gain (RLP): the reward scores with the policy's model against the state's policy EMA, moved after updates
    self.info_gain = info_gain.find(self.reward_fns)
    self.ema_step = None
    if self.info_gain is not None:
      self.info_gain.use_model(model.cfg)
      self.ema_step = make_ema_step(self.info_gain.ema_decay, shardings)
    self.totals = dict.fromkeys(COUNTS, 0.0)  # run totals of the counts, kept in the checkpoint's data state
    self.warned_flat = False

  def __call__(self, state, n: int) -> StepOutput:
    if self.sft_steps is not None:  # SASR: this step may be an SFT step instead of an RL step
      taken = self.sft_steps.instead_of_rl(state, n)
      if taken is not None:
        self.add_counts(taken.host)
        return taken
    with info_gain.reading_baseline(self.info_gain, state.get(POLICY_EMA)):  # info_gain (RLP): the EMA baseline
      rollouts = self.collector.collect(policy_params(state), n)
    t = time.time()
    batch = put_batch(rollouts.batch, self.mesh)
    batch, prepare_metrics = self.prepare(state, batch, self.frozen)
    for _ in range(self.rl.epochs):
      state, metrics = self.update(state, batch, self.frozen)
      if self.ema_step is not None:  # info_gain (RLP): the EMA follows each update
        state = self.ema_step(state)
    self.source.update(n, rollouts)
    host = self.host_metrics(rollouts)
    host.update(self.source.metrics())  # a curriculum's state (SEC: train/curriculum/...)
    for name, reward_fn in ((reward_name(f), f) for f in self.reward_fns if hasattr(f, "metrics")):
      host.update({f"train/rewards/{name}/{key}": value for key, value in reward_fn.metrics().items()})
    if self.sft_steps is not None:  # ReLIFT: buffer the all-failed questions; an SFT step when the buffer is full
      state, metrics, sft_host = self.sft_steps.after_rl(state, n, rollouts, metrics)
      host.update(sft_host)
      host["train/demo_tokens"] = host.get("train/demo_tokens", 0.0) + sft_host.get("train/sft_demo_tokens", 0.0)
    self.add_counts(host)
    host["train/seconds_dispatch"] = time.time() - t
    notes = [f"rr: reward {f.reward} failed on row {f.row}: {f.error}" for f in rollouts.failures[:5]]
    # Equal rewards in every group leave group advantages at 0, but not a critic's (the value head still learns).
    if not self.estimator.value_head and host["train/frac_reward_zero_std"] == 1.0 and not self.warned_flat:
      notes.append(f"rr: step {n + 1}: every group had equal rewards, so no learning signal (zero advantages); "
                   "this is normal early on and warned once")
      self.warned_flat = True
    return StepOutput(state, {**metrics, **prepare_metrics}, host, notes)

  def add_counts(self, host: dict) -> None:
    """Adds a step's counts ("train/<count>") to the run totals, and logs the totals so far ("train/total_...")."""
    for name in COUNTS:
      self.totals[name] += host.get(f"train/{name}", 0.0)
    host.update({f"train/total_{name}": value for name, value in self.totals.items()})

  def done(self) -> bool:
    """The run has sampled its rl.max_sampled_tokens (when set)."""
    return bool(self.rl.max_sampled_tokens) and self.totals["sampled_tokens"] >= self.rl.max_sampled_tokens

  def stateful_rewards(self) -> dict:
    """The rewards that keep host state across steps (a `state_dict` method), by name."""
    return {reward_name(f): f for f in self.reward_fns if hasattr(f, "state_dict")}

  def state_dict(self) -> dict:
    """What a resumed run needs to continue exactly: the prompt source's, the SFT steps', the stateful rewards'
    state and the totals."""
    rewards = {name: f.state_dict() for name, f in self.stateful_rewards().items()}
    return {"prompt_source": self.source.state_dict(), "totals": dict(self.totals),
            **({"sft_steps": self.sft_steps.state_dict()} if self.sft_steps is not None else {}),
            **({"rewards": rewards} if rewards else {})}

  def load_state_dict(self, state: dict) -> None:
    self.source.load_state_dict(state.get("prompt_source", {}))
    self.totals.update(state.get("totals", {}))
    if self.sft_steps is not None:
      self.sft_steps.load_state_dict(state.get("sft_steps", {}))
    for name, reward_fn in self.stateful_rewards().items():
      if name in state.get("rewards", {}):
        reward_fn.load_state_dict(state["rewards"][name])

  def host_metrics(self, rollouts: Rollouts) -> dict:
    """TRL-named "train/..." scalars of the rewards and completions, known on the host before the update."""
    sampled, chosen, counts = rollouts.sampled, rollouts.chosen, rollouts.counts
    valid = sampled.valid_N
    group_std = sampled.total_N.reshape(-1, self.rl.group_size).std(axis=1)
    lengths = chosen.lengths.astype(np.float64)
    return {"train/reward": float(sampled.total_N[valid].mean()) if valid.any() else float("nan"),
            "train/reward_std": mean_group_std(sampled.total_N, valid, self.rl.group_size),
            "train/frac_reward_zero_std": float(np.mean(group_std == 0)),
            "train/sampling_rounds": float(rollouts.rounds),
            "train/frac_groups_kept": rollouts.kept / sampled.num_groups,
            "train/completions/mean_length": float(lengths.mean()),
            "train/completions/min_length": float(lengths.min()),
            "train/completions/max_length": float(lengths.max()),
            "train/completions/clipped_ratio": float(np.mean(~rollouts.batch.has_eos)),
            "train/seconds_sampling": rollouts.seconds_sampling,
            "train/seconds_scoring": rollouts.seconds_scoring,
            # groups whose every rollout failed the verifier (before Guide resamples them), of all sampled
            "train/frac_all_failed": counts.get("all_failed_groups", 0.0) / max(counts.get("groups", 0.0), 1.0),
            **{f"train/{name}": counts.get(name, 0.0) for name in COUNTS},
            "tokens_read": float(sampled.lengths.sum()),  # every sampled token, for tokens_per_s
            "num_tokens": float((np.asarray(rollouts.batch.positions) >= 0).sum()),  # trained on: prompts too
            **{f"train/{k}": v for k, v in reward_metrics(self.reward_fns, sampled.rewards_NxK, valid).items()}}


@TRAINERS.register("grpo")
def run(config, workdir: str, should_stop: Callable[[int], bool] | None = None) -> dict:
  """Reinforces the student on the configured task and writes reports into `workdir`; returns the summary."""
  start = time.time()
  rl = config.rl
  reward_config(rl)  # bad reward settings fail here, before any data is loaded
  understanding.check_config(config)  # RLT's teacher must read the gold solution (data.prompt_context)
  if config.data.rationales_path:
    raise ConfigError(f"config.data.rationales_path={config.data.rationales_path!r}: GRPO pays rewards against the "
                      "gold answers, and teacher data replaces them with the teacher's; set it to '' for a GRPO stage "
                      "(e.g. config.stage.<name>.data.rationales_path='')")
  # ---------------------------------------------------------------- inputs
  inputs = load_inputs(config)
  tokenizer = inputs.tokenizer
  reward_fns, reward_weights = build_rewards(rl, tokenizer)
  combine = build_combination(rl, reward_fns, reward_weights)
  loss_cfg = policy_loss_config(rl)
  batch_size = rl.prompts_per_step * rl.group_size
  try:
    check_group_size(batch_size, rl.group_size)
  except GroupSizeError as e:
    raise ConfigError(str(e)) from e
  check_group_filters(rl)
  # The questions as the policy reads them: with data.prompt_context the gold answer or solution comes first (a
  # teacher that explains a known solution, RLT); the rewards still read the plain question
  prompts = encode_prompts(tokenizer, [policy_question(e, config.data.prompt_context) for e in inputs.train])
  prompt_width = -(-max(len(p) for p in prompts) // 8) * 8
  width = prompt_width + rl.max_new_tokens
  eval_examples = inputs.test[:config.eval.num_examples]
  model_cfg = build_model_config(config, tokenizer.vocab_size)
  # ---------------------------------------------------------------- mesh
  mesh = build_mesh(config, batch_size, "config.rl.prompts_per_step * config.rl.group_size")
  check_micro_batches(config.train.micro_batches, batch_size, mesh, "rl.prompts_per_step * rl.group_size",
                      rl.group_size)
  # The demonstration parts' config errors (a hint or prefix the sampler cannot take, say), before any state exists
  check_sft_steps(config, len(inputs.train), mesh)
  make_guide(config, tokenizer, inputs.train, width)
  make_prefixer(config, tokenizer, inputs.train, width)
  # ---------------------------------------------------------------- model and optimiser
  model = Decoder(model_cfg)
  total_steps = config.train.steps
  optimizer = make_optimizer(config.optim, total_steps * rl.epochs, trained_dtype(config, model_cfg))
  schedule = learning_rate_schedule(config.optim, total_steps * rl.epochs)
  # ---------------------------------------------------------------- restore
  try:  # its config errors (and whether the state needs a value head) before anything is built
    estimator = ESTIMATORS.get(rl.advantage)(config, Parts(model, shared_prompt=(rl.group_size, prompt_width),
                                                           loss_cfg=loss_cfg))
  except ValueError as e:
    raise ConfigError(f"config.rl.advantage={rl.advantage!r}: {e}") from e
  value_head = estimator.value_head
  if rl.group_size < estimator.min_group_size:
    raise ConfigError(f"config.rl.group_size={rl.group_size}: the {rl.advantage!r} advantages need at least "
                      f"{estimator.min_group_size} completions per prompt (rl.advantage='ppo' needs 1)")
  checkpoints, record, state, shardings, resumed = open_run(workdir, config, model_cfg, optimizer, mesh,
                                                           tokenizer.vocab_size, value_head=value_head,
                                                           ema=info_gain.find(reward_fns) is not None)  # info_gain
  frozen, frozen_models, frozen_shardings = reference_policy(config, model, model_cfg, optimizer, mesh, record,
                                                             shardings, tokenizer.vocab_size)
  for kind, teacher in zip((frozen, frozen_models, frozen_shardings),  # the kd term's teacher, scoring rollouts
                           teacher_model(config, term_names(config, "grpo", value_head), mesh, tokenizer.vocab_size)):
    kind.update(teacher)
  if jax.process_index() == 0:
    save_run_config(config, workdir)
  # ---------------------------------------------------------------- loop
  rl_step = GRPOStep(config, model, optimizer, shardings, mesh, tokenizer, prompts, inputs.train, reward_fns, combine,
                     width, frozen, frozen_models, frozen_shardings)
  if resumed is not None:
    rl_step.load_state_dict(checkpoints.read_record(resumed).get("data_state", {}))

  def evaluate(params) -> dict:
    if not eval_examples:
      return {}
    metrics = evaluate_accuracy(rl_step.sampler, params, tokenizer, eval_examples,
                                max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size)
    if rl_step.info_gain is not None:  # info_gain (RLP): the held-out gain of a greedy thought, the no-thought NLL
      metrics.update(rl_step.info_gain.heldout(rl_step.sampler, params, eval_examples, Greedy(),
                                               config.eval.max_new_tokens))
    return metrics

  trainer = Trainer("grpo", total_steps, rl_step, evaluate, learning_rate=lambda n: float(schedule(n * rl.epochs - 1)),
                    data_state=rl_step.state_dict, evaluate_first=True, done=rl_step.done,
                    totals=lambda: {f"total/{name}": value for name, value in rl_step.totals.items()},
                    curves=("train/reward", "train/loss", "eval/accuracy"))
  return run_loop(trainer, state, workdir, config, checkpoints, record, resumed, start, should_stop)


def reference_policy(config, model: Decoder, model_cfg, optimizer, mesh, record: dict, shardings: dict,
                     vocab_size: int) -> tuple[dict, dict, dict]:
  """(frozen params, frozen models, frozen shardings) by name: {"reference": ...} when rl.kl_beta > 0, else {}.

  The reference is rl.reference (an rr workdir or a Hugging Face directory, rr.train.frozen.load_frozen), or by
  default the run's starting params, rebuilt the same way on resume. It is never saved in the checkpoints. A LoRA
  run starts as its frozen base (B = 0), so its default reference is a copy of that base, in its base dtype: the
  step donates the state, so the reference cannot share the state's buffers.
  """
  if config.rl.kl_beta <= 0:
    return {}, {}, {}
  if config.rl.reference:
    from rr.train.frozen import load_frozen

    ref = load_frozen(config.rl.reference, mesh, vocab_size=vocab_size, dtype=config.model.param_dtype,
                      what="config.rl.reference")
    return {"reference": ref.params}, {"reference": ref.model}, {"reference": ref.shardings}
  params = starting_state(model_cfg, optimizer, mesh, config.seed, record, config.init_checkpoint,
                          hf_path=config.model.hf_path, lora=lora_settings(config))[0]["params"]
  return {"reference": params}, {"reference": model}, {"reference": shardings["params"]}
