"""Greedy held-out accuracy: is the answer right, and is every rationale step right.

Generated tasks verify answers and check steps with their own programs; user data (no task name) is
scored by exact match on whitespace-normalised answers and has no step check.
"""

from __future__ import annotations

import jax
import numpy as np

from rr import tasks
from rr.data import decode_completion, encode_prompts, parse_completion
from rr.sampler import Greedy


def score_completion(example, completion: str) -> tuple[bool, bool | None]:
  """(answer right, every step right) for one completion text; the step verdict is None without a checker."""
  rationale, answer = parse_completion(completion)
  if not example.task:
    return " ".join(answer.split()) == " ".join(example.answer.split()), None
  task = tasks.get_task(example.task)
  answer_ok = bool(task.verify(answer, example))
  steps = task.check_steps(rationale, example)
  return answer_ok, bool(answer_ok and len(steps) > 0 and all(steps))


def evaluate_accuracy(sampler, params, tokenizer, examples, *, max_new_tokens: int,
                      batch_size: int) -> dict[str, float]:
  """Samples each question once (greedy) and returns eval/accuracy, eval/step_accuracy and lengths."""
  answers, steps, lengths = [], [], []
  prompts = encode_prompts(tokenizer, [e.question for e in examples])
  for start in range(0, len(examples), batch_size):
    out = sampler(params, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                  strategy=Greedy(), rng=jax.random.key(0))
    for row, example in enumerate(examples[start:start + batch_size]):
      answer_ok, steps_ok = score_completion(example, decode_completion(tokenizer, out.tokens[row]))
      answers.append(answer_ok)
      lengths.append(int(out.lengths[row]))
      if steps_ok is not None:
        steps.append(steps_ok)
  metrics = {"eval/accuracy": float(np.mean(answers)) if answers else 0.0,
             "eval/completion_length": float(np.mean(lengths)) if lengths else 0.0,
             "eval/num_examples": len(answers)}
  if steps:
    metrics["eval/step_accuracy"] = float(np.mean(steps))
  return metrics
