"""A sampler that plays back scripted completions and a rollout collector over it: tests of what the collector's
parts (Guide's resample, Prefix-RFT's forced rows) do with what was sampled, with no model."""

from types import SimpleNamespace

import numpy as np

from rr.train.collector import RolloutCollector
from rr.train.groups import make_keep
from rr.train.rl_config import build_combination, build_rewards


class ScriptedSampler:
  """Plays back one scripted list of (completion text, per-token log-prob) per call: each text encoded, eos added,
  cut to max_new_tokens and padded; records the prompts, key, sample count and length of every call."""

  def __init__(self, tokenizer, *outputs):
    self.tokenizer, self.outputs, self.calls = tokenizer, list(outputs), []

  def __call__(self, params, prompts, *, max_new_tokens, strategy, rng, num_samples):
    self.calls.append(SimpleNamespace(prompts=[list(p) for p in prompts], rng=rng, num_samples=num_samples,
                                      max_new_tokens=max_new_tokens))
    script = self.outputs.pop(0)
    rows = [(self.tokenizer.encode(text) + [self.tokenizer.eos_id])[:max_new_tokens] for text, _ in script]
    pad = lambda row, fill: row + [fill] * (max_new_tokens - len(row))
    return SimpleNamespace(tokens=np.array([pad(r, self.tokenizer.pad_id) for r in rows], np.int32),
                           lengths=np.array([len(r) for r in rows], np.int32),
                           logprobs=np.array([pad([lp] * len(r), 0.0) for r, (_, lp) in zip(rows, script)], np.float32))


class BothQuestions:
  """A prompt source that picks train questions 0 and 1 in every round."""

  def sample(self, step, round_, count):
    return np.array([0, 1])


def scripted_collector(config, sampler, tokenizer, examples, width=16, **parts) -> RolloutCollector:
  """A RolloutCollector over `examples` (plain "question\\n" prompts) sampling from `sampler`, one round a step,
  with the collector parts given by keyword (guide=..., prefixer=...)."""
  rl = config.rl
  fns, weights = build_rewards(rl, tokenizer)
  prompts = [tokenizer.encode(e.question + "\n") for e in examples]
  return RolloutCollector(rl, sampler, tokenizer, prompts, examples, BothQuestions(), fns,
                          build_combination(rl, fns, weights), make_keep(rl), width=width, seed=3, max_rounds=1,
                          **parts)
