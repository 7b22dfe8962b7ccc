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
from rr.rewards import Combination, reward_name, score_rewards
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


class RolloutCollector:
  """`collect(params, step) -> Rollouts` for one RL step.

  `prompts[i]` (token ids) and `examples[i]` describe train question i; `source` picks which ones each round
  samples (rr.train.sources), `rl.group_size` completions each; `keep` is the group filter (rr.train.groups).
  """

  def __init__(self, rl, sampler: Sampler, tokenizer, prompts: Sequence[Sequence[int]], examples: Sequence,
               source, reward_fns: Sequence, combine: Combination, keep: Callable[[Groups], np.ndarray],
               width: int, seed: int, max_rounds: int, privileged: PrivilegedRows | None = None):
    self.rl, self.sampler, self.tokenizer, self.width, self.seed = rl, sampler, tokenizer, width, seed
    self.privileged = privileged
    self.prompts, self.examples, self.source = list(prompts), list(examples), source
    self.reward_fns, self.combine, self.keep, self.max_rounds = list(reward_fns), combine, keep, max_rounds
    names = [reward_name(f) for f in self.reward_fns]
    self.correctness_column = names.index("correctness") if "correctness" in names else None
    self.strategy = Sampling(temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p)

  def sample_round(self, params, step: int, round_: int) -> tuple[Groups, list[RewardFailure], float]:
    """(scored groups, reward failures, seconds spent sampling) of one round."""
    rl = self.rl
    picked = self.source.sample(step, round_, rl.prompts_per_step)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), step), round_)
    t = time.time()
    out = self.sampler(params, [self.prompts[i] for i in picked], max_new_tokens=rl.max_new_tokens,
                       strategy=self.strategy, rng=key, num_samples=rl.group_size)
    seconds_sampling = time.time() - t
    examples = [self.examples[i] for i in picked for _ in range(rl.group_size)]
    completions = [decode_completion(self.tokenizer, row) for row in out.tokens]
    texts = [format_prompt(self.examples[i].question, self.tokenizer) for i in picked]  # a chat template
    prompt_texts = [text for text in texts for _ in range(rl.group_size)]  # renders once per prompt, not per row
    mask_NxC = np.arange(out.tokens.shape[1])[None, :] < out.lengths[:, None]
    rewards_NxK, valid_N, failures = score_rewards(self.reward_fns, prompt_texts, completions, examples,
                                                   tokens_NxC=out.tokens, mask_NxC=mask_NxC)
    total_N = np.asarray(self.combine(rewards_NxK, valid_N))
    passed_N = (rewards_NxK[:, self.correctness_column] >= 1.0 if self.correctness_column is not None
                else np.zeros(len(completions), bool))
    groups = Groups(rl.group_size, [self.prompts[i] for i in picked], examples, out.tokens, out.lengths,
                    out.logprobs, rewards_NxK, valid_N, total_N, passed_N)
    return groups, failures, seconds_sampling

  def collect(self, params, step: int) -> Rollouts:
    rl = self.rl
    t0 = time.time()
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
                          self.tokenizer.eos_id, self.tokenizer.pad_id, self.width)
    batch = batch.replace(rewards=np.asarray(chosen.total_N, np.float32),
                          valid=np.asarray(chosen.valid_N, np.float32))
    if self.privileged is not None:
      batch = self.privileged.add_to(batch, chosen.examples, chosen.tokens, chosen.lengths)
    return Rollouts(batch, chosen, collected.sampled, collected.rounds, collected.kept, failures, sampling[0],
                    time.time() - t0 - sampling[0])
