"""RLP's information-gain reward (2510.01265; the thought-before-the-next-tokens idea of Quiet-STaR, 2403.09629):
what a sampled thought adds to the likelihood of the next tokens of plain text, with no verifier.

A prompt is a document's prefix x_<t (Example.question) and Example.answer its next k = rl.info_gain_tokens tokens
x_t..x_{t+k-1} (rr.data.text_corpus cuts documents so). A completion's thought c is its tokens up to and including
its first "</think>", and it is paid the mean over the k tokens of

  r_j = log p_theta(x_{t+j} | prompt, c, x_t..x_{t+j-1}) - log p_ema(x_{t+j} | x_<t, x_t..x_{t+j-1})

p_theta: the params that sampled (RolloutView.policy_params) reading the prompt as the policy read it, the thought
  and the continuation (its model: `use_model`);
p_ema: the no-thought baseline, an EMA of the policy (decay rl.info_gain_ema, no gradient) kept in the train state
  (rr.train.state "policy_ema", given for the round by `reading_baseline`), reading the document itself: the
  prefix's tokens then the continuation, with no prompt format and no think block (the paper's x_<t).
Under rl.advantage = "rloo", A_i = r_i - mean_{j != i} r_j = G / (G - 1) (r_i - mean r), RLP's advantage; every row of
a group shares the baseline term, so it cancels there and only sets the logged reward's level.

Rows and what they get:
  closed thought     the formula; tokens after the first "</think>" (the model's own guess of the continuation, a
                     second "</think>") are not read, and train with the row's advantage like every completion token
  unclosed thought   (cut off at rl.max_new_tokens, or eos before "</think>"): p_theta is taken as uniform over the
                     vocabulary, r = mean_j [-log V - log p_ema(x_{t+j} | ...)]: what a thought that leaves the policy
                     knowing nothing would earn, below a closed thought's for any model better than uniform
  empty thought      "<think></think>": the formula, the format's effect alone
  copied answer      a thought holding the continuation: the formula, no special case (the gain RLP pays for); on
                     plain text the policy cannot see it, and a prompt other than the plain question's is refused
  no continuation    an example whose answer encodes to no tokens: NaN, so the row is invalid (rr.rewards.base)
Both forwards run at T = 1 (the model's likelihood, whatever rl.temperature sampled), in chunks of fixed rows and a
width that only grows (to the next multiple of 32 tokens), so each compiles once per model until a longer prompt
comes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rr import sharding
from rr.data.prompts import encode_prompts, format_prompt
from rr.data.tokenizers import THINK_CLOSE, THINK_OPEN
from rr.models import Decoder, ModelConfig
from rr.rewards.base import RolloutReward, RolloutView
from rr.rewards.registry import register

WIDTH_STEP = 32  # the forwards' width grows in steps of this many tokens, so a longer prompt rarely recompiles


def continuation_logprobs(model_cfg: ModelConfig, tokens: int):
  """`fn(params, tokens_RxW, start_R, count_R) -> logp_RxK` (K = `tokens`), jittable: log p(tokens[r, start + j] |
  tokens[r, :start + j]) for j < count_R[r], 0 beyond, from one forward at T = 1 over rows laid out from position 0
  and padded on the right (causal attention: padding never reaches an earlier position)."""
  decoder = Decoder(model_cfg)

  def fn(params, tokens_RxW, start_R, count_R):
    rows, width = tokens_RxW.shape
    positions_RxW = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), (rows, width))
    logits_RxWxV = decoder.apply({"params": params}, tokens_RxW, positions_RxW)[0]
    at_RxK = jnp.clip(start_R[:, None] + jnp.arange(tokens)[None, :], 1, width - 1)
    logits_RxKxV = jnp.take_along_axis(logits_RxWxV, (at_RxK - 1)[..., None], axis=1).astype(jnp.float32)
    target_RxK = jnp.take_along_axis(tokens_RxW, at_RxK, axis=1)
    logp_RxK = jnp.take_along_axis(jax.nn.log_softmax(logits_RxKxV, axis=-1), target_RxK[..., None], axis=-1)[..., 0]
    return jnp.where(jnp.arange(tokens)[None, :] < count_R[:, None], logp_RxK, 0.0)

  return fn


class InfoGain(RolloutReward):
  """The "info_gain" reward (module docstring). The grpo trainer hands it the policy's model (`use_model`) and, for
  each round, the state's EMA (`reading_baseline`); `heldout` is its evaluation."""
  name = "info_gain"

  def __init__(self, tokenizer, tokens: int, rows: int, group_size: int, ema_decay: float):
    self.tokenizer, self.tokens, self.rows, self.ema_decay = tokenizer, tokens, rows, ema_decay
    self.baseline_rows = -(-rows // group_size)  # one no-thought row per prompt
    self.close_ids = list(tokenizer.encode(THINK_CLOSE))
    self.empty_thought = list(tokenizer.encode(THINK_OPEN + THINK_CLOSE))
    self.model_cfg: ModelConfig | None = None
    self.baseline_params = None  # the EMA, only while a round is scored
    self.batch_sharding, self.shards, self.width, self._forward, self._last = None, 1, 0, None, {}

  def bind(self, mesh, vocab_size: int, load_frozen=None) -> None:
    del vocab_size, load_frozen  # the uniform floor reads the model's own vocabulary; the models are the policy's
    if mesh is not None:  # rows split over the batch axes, as the train batch's
      self.shards = sharding.batch_shards(mesh)
      self.baseline_rows = -(-self.baseline_rows // self.shards) * self.shards
      self.batch_sharding = sharding.batch_sharding(mesh)

  def use_model(self, model_cfg: ModelConfig) -> None:
    """The policy's architecture, which both forwards run (the EMA has the policy's shapes)."""
    self.model_cfg = dataclasses.replace(model_cfg, embed_one_hot=False)  # no backward: gathers are cheaper
    self._forward = jax.jit(continuation_logprobs(self.model_cfg, self.tokens))

  # ------------------------------------------------------------------------------------------ host side

  def continuation(self, example) -> list[int]:
    """The next tokens a row predicts: the first k tokens of the example's answer."""
    return list(self.tokenizer.encode(example.answer))[:self.tokens]

  def thought_end(self, row: Sequence[int]) -> int | None:
    """How many of a completion's tokens (up to its first eos) make its thought, "</think>" included; None when it
    never closes. "</think>" is found as its token ids, or in the decoded text where a tokenizer merged it with its
    neighbours."""
    row = [int(t) for t in row]
    if self.tokenizer.eos_id in row:
      row = row[:row.index(self.tokenizer.eos_id)]
    close = self.close_ids
    for j in range(len(row) - len(close) + 1):
      if row[j:j + len(close)] == close:
        return j + len(close)
    if THINK_CLOSE not in self.tokenizer.decode(row):
      return None
    return next(j for j in range(1, len(row) + 1) if THINK_CLOSE in self.tokenizer.decode(row[:j]))

  def logprobs(self, params, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
               rows: int) -> np.ndarray:
    """float64 [n, k]: log p of each continuation's tokens after its context under `params`, 0 past its length;
    jitted forwards of `rows` rows at a time."""
    n = len(contexts)
    need = max((len(c) + len(x) for c, x in zip(contexts, continuations)), default=1)
    self.width = max(self.width, -(-need // WIDTH_STEP) * WIDTH_STEP)
    out = np.zeros((n, self.tokens))
    for first in range(0, n, rows):
      tokens_RxW = np.full((rows, self.width), self.tokenizer.pad_id, np.int32)
      start_R, count_R = np.zeros(rows, np.int32), np.zeros(rows, np.int32)
      for r, i in enumerate(range(first, min(first + rows, n))):
        row = list(contexts[i]) + list(continuations[i])
        tokens_RxW[r, :len(row)] = row
        start_R[r], count_R[r] = len(contexts[i]), len(continuations[i])
      inputs = (tokens_RxW, start_R, count_R)
      if self.batch_sharding is not None and rows % self.shards == 0:
        inputs = jax.device_put(inputs, self.batch_sharding)
      out[first:first + rows] = np.asarray(self._forward(params, *inputs), np.float64)[:n - first]
    return out

  def no_thought_logprobs(self, params, examples, continuations) -> np.ndarray:
    """[n, k] log p of each continuation after its document prefix alone, each distinct one computed once."""
    keys = [(tuple(self.tokenizer.encode(e.question)), tuple(c)) for e, c in zip(examples, continuations)]
    distinct = list(dict.fromkeys(keys))
    values = self.logprobs(params, [k[0] for k in distinct], [k[1] for k in distinct], self.baseline_rows)
    where = {key: values[i] for i, key in enumerate(distinct)}
    return np.stack([where[key] for key in keys]) if keys else np.zeros((0, self.tokens))

  def gains(self, thought_logp_NxK: np.ndarray, base_logp_NxK: np.ndarray, closed_N: np.ndarray,
            counts_N: np.ndarray) -> np.ndarray:
    """Mean over each row's continuation tokens of (thought - baseline) log-probs; an unclosed row's thought
    log-probs are the uniform -log V; NaN for a row with no continuation."""
    floor = -math.log(self.model_cfg.vocab_size)
    mask_NxK = np.arange(self.tokens)[None, :] < counts_N[:, None]
    theta_NxK = np.where(closed_N[:, None], thought_logp_NxK, floor)
    total = np.where(mask_NxK, theta_NxK - base_logp_NxK, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(counts_N > 0, total / counts_N, np.nan)

  def _thought_rows(self, tokens_NxC, mask_NxC, prompt_ids) -> tuple[list, np.ndarray, np.ndarray]:
    """(thought contexts: prompt + thought, closed [N], thought lengths [N]) of sampled completions."""
    ends = [self.thought_end(np.asarray(row)[np.asarray(m, bool)]) for row, m in zip(tokens_NxC, mask_NxC)]
    closed = np.array([e is not None for e in ends])
    contexts = [list(p) + [int(t) for t in row[:e]] for p, row, e in zip(prompt_ids, tokens_NxC, ends)
                if e is not None]
    return contexts, closed, np.array([e or 0 for e in ends], np.float64)

  def check_plain_prompts(self, view: RolloutView) -> None:
    """Refuses a round whose policy read more than the plain question (data.prompt_context): it would have read the
    continuation its thought is paid for predicting."""
    for ids, example in zip(view.prompt_ids, view.examples):
      if list(ids) != self.tokenizer.encode(format_prompt(example.question, self.tokenizer)):
        raise ValueError("info_gain: the policy read a prompt other than the plain question (config.data."
                         "prompt_context?), which may hold the continuation it is paid for predicting; set "
                         "data.prompt_context=''")

  def _check_ready(self) -> None:
    if self.model_cfg is None:
      raise ValueError("info_gain scores with the policy's model: call use_model(model_cfg) first (the grpo trainer "
                       "does)")

  # ------------------------------------------------------------------------------------------ the reward

  def score(self, view: RolloutView) -> np.ndarray:
    self._check_ready()
    if self.baseline_params is None:
      raise ValueError("info_gain needs the EMA baseline for this round: score inside reading_baseline(reward, ema) "
                       "(the grpo trainer passes the train state's policy_ema)")
    self.check_plain_prompts(view)
    continuations = [self.continuation(e) for e in view.examples]
    counts = np.array([len(c) for c in continuations])
    contexts, closed, lengths = self._thought_rows(view.tokens_NxC, view.mask_NxC, view.prompt_ids)
    thought = np.zeros((len(counts), self.tokens))
    if closed.any():
      thought[closed] = self.logprobs(view.policy_params, contexts,
                                      [c for c, ok in zip(continuations, closed) if ok], self.rows)
    base = self.no_thought_logprobs(self.baseline_params, view.examples, continuations)
    gains = self.gains(thought, base, closed, counts)
    per_token = lambda lp, rows: float(lp[rows].sum() / max(counts[rows].sum(), 1))
    self._last = {"closed_frac": float(closed.mean()), "ema_logp": per_token(base, counts > 0)}
    if closed.any():
      self._last.update(thought_logp=per_token(thought, closed), thought_tokens=float(lengths[closed].mean()))
    return gains.astype(np.float32)

  def metrics(self) -> dict[str, float]:
    """The last round's parts: share of closed thoughts, per-token log-probs of the continuation with the thought
    (closed rows) and under the EMA without it, the closed thoughts' mean length in tokens."""
    return dict(self._last)

  def heldout(self, sampler, params, examples: Sequence, strategy, max_new_tokens: int) -> dict[str, float]:
    """The method's own measure on held-out text, with the policy as its own no-thought baseline (the EMA is the
    training device; here the question is whether thinking helps this model): one thought per example from
    `sampler` with `strategy` (greedy at evaluation), then per continuation token, in nats,
      eval/info_gain             mean r, as the reward scores it (the uniform floor for unclosed thoughts)
      eval/info_gain_over_empty  the thought against an empty "<think></think>": the thought's content alone
      eval/nll_no_thought        -log p of the continuation after the document prefix alone
      eval/nll_empty_thought     ... after the prompt and an empty thought
      eval/nll_thought           ... after the prompt and the thought (closed thoughts only)
      eval/thought_closed_frac   share of thoughts closed within max_new_tokens
    """
    self._check_ready()
    examples = list(examples)
    if not examples:
      return {}
    prompts = encode_prompts(self.tokenizer, [e.question for e in examples])
    out = sampler(params, prompts, max_new_tokens=max_new_tokens, strategy=strategy)
    mask_NxC = np.arange(out.tokens.shape[1])[None, :] < out.lengths[:, None]
    continuations = [self.continuation(e) for e in examples]
    counts = np.array([len(c) for c in continuations])
    contexts, closed, _ = self._thought_rows(out.tokens, mask_NxC, prompts)
    thought = np.zeros((len(examples), self.tokens))
    if closed.any():
      thought[closed] = self.logprobs(params, contexts, [c for c, ok in zip(continuations, closed) if ok], self.rows)
    empty = self.logprobs(params, [p + self.empty_thought for p in prompts], continuations, self.rows)
    base = self.no_thought_logprobs(params, examples, continuations)
    valid = counts > 0
    nll = lambda lp, rows: float(-lp[rows].sum() / max(counts[rows].sum(), 1))
    metrics = {"eval/info_gain": float(np.mean(self.gains(thought, base, closed, counts)[valid])),
               "eval/info_gain_over_empty": float(np.mean(self.gains(thought, empty, closed, counts)[valid])),
               "eval/nll_no_thought": nll(base, valid), "eval/nll_empty_thought": nll(empty, valid),
               "eval/thought_closed_frac": float(closed.mean())}
    if (closed & valid).any():
      metrics["eval/nll_thought"] = nll(thought, closed & valid)
    return metrics


@register("info_gain", factory=True)
def make_info_gain(rl, tokenizer) -> InfoGain:
  """The reward for config.rl: k = rl.info_gain_tokens, the EMA decay rl.info_gain_ema, fixed forward rows of one
  step's rl.prompts_per_step * rl.group_size completions."""
  if rl.info_gain_tokens < 1:
    raise ValueError(f"rl.info_gain_tokens={rl.info_gain_tokens} must be >= 1: the next tokens a thought is paid for")
  if not 0.0 <= rl.info_gain_ema <= 1.0:
    raise ValueError(f"rl.info_gain_ema={rl.info_gain_ema} must be in [0, 1]: the EMA baseline's decay tau (RLP: "
                     "0.999; 1 keeps the starting policy)")
  return InfoGain(tokenizer, rl.info_gain_tokens, rl.prompts_per_step * rl.group_size, rl.group_size,
                  rl.info_gain_ema)


def find(reward_fns: Sequence) -> InfoGain | None:
  """The run's info_gain reward, if rl.rewards names it."""
  return next((f for f in reward_fns if isinstance(f, InfoGain)), None)


@contextlib.contextmanager
def reading_baseline(reward: InfoGain | None, ema_params):
  """Inside, `reward` scores against `ema_params` (the train state's policy EMA); after, it holds no reference to
  them, since the next update donates the state. Does nothing for reward None."""
  if reward is None:
    yield
    return
  reward.baseline_params = ema_params
  try:
    yield
  finally:
    reward.baseline_params = None
