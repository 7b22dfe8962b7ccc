"""The rollout collector: sample groups of completions, decode and score them, filter groups (the dynamic-
sampling rounds), and lay the chosen ones out as a host TrainBatch. It never updates the model: the trainer
(rr.train.grpo) hands its batch to the device-side prepare and update steps. With `privileged` (the objective has
"privileged_kd") the batch also holds the self-teacher's rows of the chosen completions (rr.train.privileged).

Prompts come from the prompt source and sampling keys are pure functions of (seed, step, round), so a resumed run
draws the same rollouts.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import jax
import numpy as np

from rr.data import decode_completion, format_prompt
from rr.rewards import Combination, RolloutView, reward_name, score_rewards
from rr.rewards.base import RewardFailure
from rr.sampler import Sampler, Sampling
from rr.train.batch import TrainBatch, rollout_batch
from rr.train.groups import Collected, Groups, collect_groups
from rr.train.privileged import PrivilegedRows


@dataclasses.dataclass
class Rollouts:
  """One step's rollouts: the batch to train on and what the logs report about them."""
  batch: TrainBatch  # host arrays, rewards and validity filled; advantages come on the device
  chosen: Groups  # the groups in `batch`
  sampled: Groups  # every group sampled this step, kept or not (for reward metrics)
  rounds: int
  kept: int
  failures: list[RewardFailure]
  seconds_sampling: float
  seconds_scoring: float
  counts: dict = dataclasses.field(default_factory=dict)  # this step's RolloutCollector.count() totals


class RolloutCollector:
  """`collect(params, step) -> Rollouts` for one RL step.

  `prompts[i]` (token ids) and `examples[i]` describe train question i; `source` picks which ones each round
  samples (rr.train.sources), `rl.group_size` completions each; `keep` is the group filter (rr.train.groups).
  Two optional parts change what a round samples: `prefixer` (rr.train.prefix_rft) forces some rollouts of each
  group to continue a demonstration prefix, and `guide` (rr.train.guide) samples a group whose rollouts all
  failed again with a hint in the prompt.
  """

  def __init__(self, rl, sampler: Sampler, tokenizer, prompts: Sequence[Sequence[int]], examples: Sequence,
               source, reward_fns: Sequence, combine: Combination, keep: Callable[[Groups], np.ndarray],
               width: int, seed: int, max_rounds: int, privileged: PrivilegedRows | None = None,
               prefixer=None, guide=None):
    self.rl, self.sampler, self.tokenizer, self.width, self.seed = rl, sampler, tokenizer, width, seed
    self.privileged, self.prefixer, self.guide = privileged, prefixer, guide
    self.counts: dict[str, float] = {}
    self.prompts, self.examples, self.source = list(prompts), list(examples), source
    self.reward_fns, self.combine, self.keep, self.max_rounds = list(reward_fns), combine, keep, max_rounds
    names = [reward_name(f) for f in self.reward_fns]
    self.correctness_column = names.index("correctness") if "correctness" in names else None
    self.strategy = Sampling(temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p)

  def count(self, **amounts: float) -> None:
    """Adds to this step's counts (Rollouts.counts): "sampled_tokens" the sampler generated, "demo_tokens" of
    demonstrations the rollouts were given (forced prefixes, hints), "all_failed_groups" and "groups" sampled."""
    for name, amount in amounts.items():
      self.counts[name] = self.counts.get(name, 0.0) + float(amount)

  def round_key(self, step: int, round_: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), step), round_)

  def sample_completions(self, params, picked: np.ndarray, step: int,
                         key: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens [N, C], lengths [N], sampler log-probs [N, C], prefix lengths [N]) of rl.group_size completions of
    each picked question, prompt-major; the prefixer's forced rows among them when there is one."""
    if self.prefixer is not None:
      return self.prefixer.sample(self, params, picked, step, key)
    out = self.sampler(params, [self.prompts[i] for i in picked], max_new_tokens=self.rl.max_new_tokens,
                       strategy=self.strategy, rng=key, num_samples=self.rl.group_size)
    self.count(sampled_tokens=int(np.sum(out.lengths)))
    return out.tokens, out.lengths, out.logprobs, np.zeros(len(out.lengths), np.int32)

  def score(self, picked: np.ndarray, tokens_NxC: np.ndarray, lengths_N: np.ndarray, logprobs_NxC: np.ndarray,
            prefix_len_N: np.ndarray | None = None, guided_N: np.ndarray | None = None, params=None,
            prompt_ids: Sequence[Sequence[int]] | None = None) -> tuple[Groups, list[RewardFailure]]:
    """The completions of the picked questions (rl.group_size each, prompt-major) scored by every reward against
    the question without any hint, as Groups. Rollout rewards (rr.rewards.RolloutReward) also read `params`, the
    params that sampled, and `prompt_ids`, the prompts the policy read (default: the questions' own)."""
    rl = self.rl
    examples = [self.examples[i] for i in picked for _ in range(rl.group_size)]
    completions = [decode_completion(self.tokenizer, row) for row in tokens_NxC]
    texts = [format_prompt(self.examples[i].question, self.tokenizer) for i in picked]  # a chat template
    prompt_texts = [text for text in texts for _ in range(rl.group_size)]  # renders once per prompt, not per row
    mask_NxC = np.arange(tokens_NxC.shape[1])[None, :] < lengths_N[:, None]
    read = [self.prompts[i] for i in picked] if prompt_ids is None else list(prompt_ids)
    view = RolloutView(prompt_texts, completions, examples, [ids for ids in read for _ in range(rl.group_size)],
                       tokens_NxC, mask_NxC, logprobs_NxC, params)
    rewards_NxK, valid_N, failures = score_rewards(self.reward_fns, prompt_texts, completions, examples,
                                                   tokens_NxC=tokens_NxC, mask_NxC=mask_NxC, view=view)
    total_N = np.asarray(self.combine(rewards_NxK, valid_N))
    passed_N = (rewards_NxK[:, self.correctness_column] >= 1.0 if self.correctness_column is not None
                else np.zeros(len(completions), bool))
    groups = Groups(rl.group_size, [self.prompts[i] for i in picked], examples, tokens_NxC, lengths_N,
                    logprobs_NxC, rewards_NxK, valid_N, total_N, passed_N, prefix_len_N, guided_N)
    return groups, failures

  def sample_round(self, params, step: int, round_: int) -> tuple[Groups, list[RewardFailure], float]:
    """(scored groups, reward failures, seconds spent sampling) of one round."""
    picked = self.source.sample(step, round_, self.rl.prompts_per_step)
    t = time.time()
    tokens, lengths, logprobs, prefix_len = self.sample_completions(params, picked, step, self.round_key(step, round_))
    seconds_sampling = time.time() - t
    groups, failures = self.score(picked, tokens, lengths, logprobs, prefix_len, params=params)
    self.count(all_failed_groups=int(groups.all_failed.sum()), groups=groups.num_groups)
    if self.guide is not None:
      t = time.time()
      groups, guide_failures = self.guide.resample_failed(self, params, groups, picked, step, round_)
      failures.extend(guide_failures)
      seconds_sampling += time.time() - t
    return groups, failures, seconds_sampling

  def collect(self, params, step: int) -> Rollouts:
    rl = self.rl
    t0 = time.time()
    self.counts = {}
    failures: list[RewardFailure] = []
    sampling = [0.0]

    def one_round(round_: int) -> Groups:
      groups, round_failures, seconds = self.sample_round(params, step, round_)
      failures.extend(round_failures)
      sampling[0] += seconds
      return groups

    collected: Collected = collect_groups(one_round, rl.prompts_per_step, self.max_rounds, self.keep)
    chosen = collected.batch
    batch = rollout_batch(chosen.prompts, rl.group_size, chosen.tokens, chosen.lengths, chosen.logprobs,
                          self.tokenizer.eos_id, self.tokenizer.pad_id, self.width, chosen.prefix_len_N,
                          chosen.guided_N)
    batch = batch.replace(rewards=np.asarray(chosen.total_N, np.float32),
                          valid=np.asarray(chosen.valid_N, np.float32))
    if self.privileged is not None:
      batch = self.privileged.add_to(batch, chosen.examples, chosen.tokens, chosen.lengths)
    return Rollouts(batch, chosen, collected.sampled, collected.rounds, collected.kept, failures, sampling[0],
                    time.time() - t0 - sampling[0], dict(self.counts))
