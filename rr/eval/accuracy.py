"""Greedy held-out accuracy for the training loops' periodic evaluation: is the answer right, is every
rationale step right, and how many completions had no answer; on held-out questions of several difficulties
(config.data.difficulty_max), also the accuracy at each level, since a mean over levels hides where a method
helps. Scoring is `rr.eval.scoring.score`, the same as `python -m rr.eval`'s.
"""

from __future__ import annotations

import jax
import numpy as np

from rr.data import decode_completion, encode_prompts
from rr.eval.metrics import accuracy_by
from rr.eval.scoring import score
from rr.sampler import Greedy


def evaluate_accuracy(sampler, params, tokenizer, examples, *, max_new_tokens: int,
                      batch_size: int) -> dict[str, float]:
  """Samples each question once (greedy) and returns eval/accuracy, eval/step_accuracy (generated tasks),
  eval/unparsed and the mean completion length; with more than one difficulty among `examples`, also
  eval/accuracy/difficulty_<d> and eval/num_examples/difficulty_<d> per level d."""
  scored = []
  prompts = encode_prompts(tokenizer, [e.question for e in examples])
  for start in range(0, len(examples), batch_size):
    out = sampler(params, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                  strategy=Greedy(), rng=jax.random.key(0))
    for row, example in enumerate(examples[start:start + batch_size]):
      scored.append(score(example, decode_completion(tokenizer, out.tokens[row]), out.lengths[row]))
  metrics = {"eval/accuracy": float(np.mean([s.correct for s in scored])) if scored else 0.0,
             "eval/completion_length": float(np.mean([s.length for s in scored])) if scored else 0.0,
             "eval/unparsed": sum(s.answer is None for s in scored),
             "eval/num_examples": len(scored)}
  steps = [s.steps_ok for s in scored if s.steps_ok is not None]
  if steps:
    metrics["eval/step_accuracy"] = float(np.mean(steps))
  by_level = accuracy_by([e.difficulty for e in examples], [s.correct for s in scored])
  if len(by_level) > 1:
    for level, v in by_level.items():
      metrics[f"eval/accuracy/difficulty_{level}"] = v["accuracy"]
      metrics[f"eval/num_examples/difficulty_{level}"] = v["count"]
  return metrics
