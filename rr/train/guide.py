"""Guide (arXiv 2506.13923, docs/methods.md "Guide"): a group whose rollouts all fail is sampled again with a hint.

Two parts, both on only with config.rl.guide:
- `Guide.resample_failed`, the collector's hook after each sampling round: the groups with no verified rollout
  are sampled again, G completions each, from their question with a hint in the prompt (the first
  ceil(rl.guide_hint_fraction * n) of the teacher rationale's n steps, or the gold answer), in one sampler call
  per round, and those rollouts replace the group's. The trained row is the UNHINTED prompt followed by the
  hinted completion, and the row is marked guided, so its tokens land in TrainBatch.guided_mask, not policy_mask.
- The "guide" objective term on those tokens: the policy without the hint, importance-weighted against the hinted
  sampler, rho_t = pi_theta(o_t | q, o_<t) / pi_old(o_t | q, h, o_<t), squashed as rho / (rho + gamma) instead of
  clipped, gamma the rl.guide_quantile quantile of the batch's guided ratios (detached).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rr.config import ConfigError
from rr.data import format_prompt
from rr.losses import aggregate, masked_mean
from rr.registry import split_names
from rr.sampler.sampler import DEFAULT_PROMPT_BUCKETS
from rr.tasks import Example, rationale_steps
from rr.train.groups import Groups
from rr.train.objectives import TERMS, Forward, Parts, Term

GUIDE_KEY = 0x6775  # folded into a round's key for its hinted resample, so it never repeats the round's own draws
# |log rho| is capped at this inside gamma and the logged mean only (exp(50) is finite in float32), so one
# pathological token cannot make gamma inf; the loss itself reads the uncapped ratio (through a sigmoid).
LOG_RATIO_CAP = 50.0
FRACTION_SLACK = 1e-9  # 0.28 * 25 is 7.000000000000001 in floating point; the fraction means 7 of 25 steps


# ------------------------------------------------------------------------------------------ the hint

def hint_steps(rationale: str, fraction: float) -> list[str]:
  """The first ceil(fraction * n) of the rationale's n steps (its non-empty lines)."""
  steps = rationale_steps(rationale)
  return steps[:math.ceil(fraction * len(steps) - FRACTION_SLACK)]


def hinted_question(example: Example, hint: str, fraction: float) -> str:
  """The question with its hint, in plain ASCII so every tokenizer encodes it: "q (hint: step; step)" for the
  rationale hint, "q (answer: a)" (STaR's rationalisation prompt) for the answer hint and for an example whose
  rationale has no steps (user data)."""
  steps = hint_steps(example.rationale, fraction) if hint == "rationale" else []
  if steps:
    return f"{example.question} (hint: {'; '.join(steps)})"
  return f"{example.question} (answer: {example.answer})"


# ------------------------------------------------------------------------------------------ the resample

class Guide:
  """The collector's guide part: `hinted_prompts[i]` are train question i's hinted prompt ids, `hint_tokens[i]`
  how many more tokens than its plain prompt they hold (the demonstration the rollouts are given)."""

  def __init__(self, hinted_prompts: Sequence[Sequence[int]], hint_tokens: np.ndarray):
    self.hinted_prompts, self.hint_tokens = list(hinted_prompts), np.asarray(hint_tokens, np.int64)

  def resample_failed(self, collector, params, groups: Groups, picked: np.ndarray, step: int,
                      round_: int) -> tuple[Groups, list]:
    """(the round's groups with every all-failed one replaced by its hinted resample, the resample's reward
    failures). A resample replaces its group even when it fails too (the paper's rule): its rows are then as
    flat in correctness as the group they replace, and any other reward's spread is still signal."""
    failed = np.flatnonzero(groups.all_failed)
    if not len(failed):
      return groups, []
    questions = np.asarray(picked)[failed]
    rl = collector.rl
    key = jax.random.fold_in(collector.round_key(step, round_), GUIDE_KEY)
    out = collector.sampler(params, [self.hinted_prompts[i] for i in questions], max_new_tokens=rl.max_new_tokens,
                            strategy=collector.strategy, rng=key, num_samples=rl.group_size)
    collector.count(sampled_tokens=int(np.sum(out.lengths)), demo_tokens=int(self.hint_tokens[questions].sum()))
    guided, failures = collector.score(questions, out.tokens, out.lengths, out.logprobs,
                                       guided_N=np.ones(len(out.lengths), bool), params=params,
                                       prompt_ids=[self.hinted_prompts[i] for i in questions])
    order = np.arange(groups.num_groups)
    order[failed] = groups.num_groups + np.arange(len(failed))  # group g's rows now come from its resample
    return Groups.concat([groups, guided]).take(order), failures


def make_guide(config, tokenizer, examples: Sequence[Example], width: int,
               longest_prompt: int = DEFAULT_PROMPT_BUCKETS[-1]) -> Guide | None:
  """The collector's guide part for config.rl.guide, or None when it is off. Every train question's hinted prompt
  is encoded here, so one the sampler cannot take (over `longest_prompt`, the trainer's Sampler's largest prompt
  bucket) is a ConfigError before any step. `width` is the trained rows' and does not bound the hinted prompts:
  the trained row holds the plain prompt."""
  rl = config.rl
  if not rl.guide:
    return None
  if "correctness" not in split_names(rl.rewards):
    raise ConfigError(f"config.rl.guide resamples the groups the task verifier accepts no rollout of, but "
                      f"config.rl.rewards={rl.rewards!r} has no verifier, so every group would count as failed; "
                      "add 'correctness' to config.rl.rewards")
  if rl.advantage == "ppo":
    raise ConfigError("config.rl.guide needs a group advantage estimator (grpo, drgrpo, rloo, reinforce++), not "
                      "config.rl.advantage='ppo': PPO's advantages cover the policy's own tokens only, so the guided "
                      "rollouts would train with zero advantage")
  if rl.guide_hint == "rationale" and rl.guide_hint_fraction <= 0:
    raise ConfigError(f"config.rl.guide_hint_fraction={rl.guide_hint_fraction} gives a hint of no rationale steps; "
                      "set it in (0, 1] or use config.rl.guide_hint='answer'")
  hinted, extra = [], []
  for example in examples:
    question = hinted_question(example, rl.guide_hint, rl.guide_hint_fraction)
    ids = tokenizer.encode(format_prompt(question, tokenizer))
    if len(ids) > longest_prompt:
      raise ConfigError(f"config.rl.guide_hint={rl.guide_hint!r} (guide_hint_fraction={rl.guide_hint_fraction}) "
                        f"makes the hinted prompt of train question {example.question[:60]!r} {len(ids)} tokens, "
                        f"more than the sampler's longest prompt bucket ({longest_prompt}); lower "
                        "config.rl.guide_hint_fraction or use config.rl.guide_hint='answer'")
    hinted.append(ids)
    extra.append(max(len(ids) - len(tokenizer.encode(format_prompt(example.question, tokenizer))), 0))
  return Guide(hinted, np.asarray(extra, np.int64))


# ------------------------------------------------------------------------------------------ the term

def masked_quantile(values_BxT: jax.Array, mask_BxT: jax.Array, q: float) -> jax.Array:
  """numpy's default ("linear") q-quantile of the values where mask > 0, detached; 1 when there are none.
  jit-safe: a fixed-size sort with the unmasked entries pushed past the end as +inf."""
  flat = jax.lax.stop_gradient(values_BxT).astype(jnp.float32).reshape(-1)
  keep = mask_BxT.reshape(-1) > 0
  count = keep.sum()
  ordered = jnp.sort(jnp.where(keep, flat, jnp.inf))
  last = jnp.maximum(count - 1, 0)
  position = q * last.astype(jnp.float32)  # numpy's virtual index (n - 1) q
  low = jnp.floor(position)
  low_i = low.astype(jnp.int32)
  high_i = jnp.minimum(low_i + 1, last)
  value = ordered[low_i] + (position - low) * (ordered[high_i] - ordered[low_i])
  return jnp.where(count > 0, value, 1.0)


@TERMS.register("guide")
def guide_term(config, parts: Parts) -> Term:
  """-A_i rho_t / (rho_t + gamma) on the guided tokens (docs/methods.md, "Guide"), rho_t per token against the
  hinted sampler's log-probs (batch.behaviour_logp, not old_logp: that one is the unhinted policy's), written as
  sigmoid(log rho_t - log gamma), the same value, finite for any ratio. Aggregated so the guided rows weigh as the
  policy term's rows do: under "token-mean" the token mean over guided tokens times their share of all trained
  (guided + policy) tokens; under the per-row aggregations rl.aggregation itself over the batch's rows."""
  cfg, quantile = parts.loss_cfg, config.rl.guide_quantile

  def term(fwd: Forward):
    zero = jnp.zeros((), jnp.float32)
    batch = fwd.batch
    if batch.guided_mask is None:  # no row of this batch was guided
      return zero, {"guide_tokens": zero}
    mask = fwd.guided_mask
    log_ratio = jnp.where(mask > 0, fwd.logp.astype(jnp.float32) - batch.behaviour_logp, 0.0)
    capped_rho = jnp.exp(jnp.clip(jax.lax.stop_gradient(log_ratio), -LOG_RATIO_CAP, LOG_RATIO_CAP))
    gamma = masked_quantile(capped_rho, mask, quantile)
    squashed = jax.nn.sigmoid(log_ratio - jnp.log(gamma))  # rho / (rho + gamma)
    advantages = batch.advantages if batch.advantages.ndim == 2 else batch.advantages[:, None]
    loss_BxT = -advantages * squashed
    count = mask.sum()
    if cfg.aggregation == "token-mean":
      # The policy-side terms divide by the same policy + guided tokens (Forward.policy_share): one token mean.
      total = fwd.totals["guided"] + fwd.totals["policy"] if fwd.totals is not None else count + fwd.policy_mask.sum()
      loss = masked_mean(loss_BxT, mask) * count / jnp.maximum(total, 1.0)
    else:
      loss = (aggregate(loss_BxT, mask, cfg.aggregation, cfg.max_completion_len)
              * fwd.share("rows", jnp.float32(batch.tokens.shape[0])))
    return loss, {"guide_rho_mean": masked_mean(capped_rho, mask), "guide_gamma": gamma, "guide_tokens": count}

  return term
