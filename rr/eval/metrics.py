"""Evaluation metrics from sampled completions (docs/methods.md, "Evaluation metrics"): pure functions of host
arrays.

pass@k is the unbiased estimator of 2107.03374 (not the biased 1 - (1 - c/n)^k), CoT-pass@k (2506.14245)
is the same estimator over samples whose answer *and* every rationale step are right, and maj@k votes over
the first k samples. Calibration reads the confidences completions state, and is reported with its coverage
(how many state one). Nothing here raises on a bad completion: an unparsed answer is None and counts as wrong.
"""

from __future__ import annotations

import collections
from typing import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
  """P(at least one of k samples drawn without replacement from n, c of them right, is right).

  1 - C(n-c, k) / C(n, k) in its stable product form 1 - prod_{i=n-c+1..n} (1 - k / i).
  """
  if not 0 <= c <= n or not 1 <= k <= n:
    raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(correct_QxS: np.ndarray, k: int) -> float:
  """pass@k averaged over questions, from a [questions, samples] array of right/wrong."""
  correct_QxS = np.asarray(correct_QxS, bool)
  n = correct_QxS.shape[1]
  return float(np.mean([pass_at_k(n, int(c), k) for c in correct_QxS.sum(axis=1)]))


def majority_vote(answers: Sequence[str | None]) -> str | None:
  """The most frequent answer; a tie goes to the answer that appeared first. Unparsed answers (None) never
  win unless every answer is None."""
  counts = collections.Counter(a for a in answers if a is not None)
  if not counts:
    return None
  best = max(counts.values())
  return next(a for a in answers if a is not None and counts[a] == best)


def maj_at_k(answers_QxS: Sequence[Sequence[str | None]], right_QxS: np.ndarray, k: int) -> float:
  """Share of questions whose majority answer over the first k samples is right (a sample carrying that
  answer was judged right, so answers are compared as the verifier compares them once normalised)."""
  right_QxS = np.asarray(right_QxS, bool)
  hits = []
  for answers, right in zip(answers_QxS, right_QxS, strict=True):
    if k > len(answers):
      raise ValueError(f"maj_at_k: k={k} but only {len(answers)} samples per question")
    winner = majority_vote(answers[:k])
    hits.append(winner is not None and any(r for a, r in zip(answers[:k], right[:k]) if a == winner))
  return float(np.mean(hits))


def calibration(confidences: np.ndarray, correct: np.ndarray, num_bins: int = 10) -> dict:
  """Expected calibration error over `num_bins` equal-width bins of stated confidence, and the Brier score.

  ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|; Brier = mean (c - correct)^2. A confidence of
  exactly 1.0 falls in the last bin. Empty bins are listed with count 0 and contribute nothing.
  """
  confidences = np.asarray(confidences, np.float64)
  correct = np.asarray(correct, bool).astype(np.float64)
  if num_bins < 1:
    raise ValueError(f"calibration: num_bins must be >= 1, got {num_bins}")
  if confidences.size == 0:
    return {"ece": float("nan"), "brier": float("nan"), "count": 0, "bins": []}
  index = np.minimum((confidences * num_bins).astype(int), num_bins - 1)
  bins, ece = [], 0.0
  for b in range(num_bins):
    in_bin = index == b
    count = int(in_bin.sum())
    confidence = float(confidences[in_bin].mean()) if count else float("nan")
    accuracy = float(correct[in_bin].mean()) if count else float("nan")
    if count:
      ece += count / confidences.size * abs(accuracy - confidence)
    bins.append({"lo": b / num_bins, "hi": (b + 1) / num_bins, "count": count, "confidence": confidence,
                 "accuracy": accuracy})
  brier = float(np.mean(np.square(confidences - correct)))
  return {"ece": float(ece), "brier": brier, "count": int(confidences.size), "bins": bins}


def confidence_coverage(confidences: Sequence[float | None], correct: Sequence[bool]) -> dict:
  """How many completions state a confidence (None: stated none), overall and among right and wrong answers.

  ECE and Brier read only the completions that state one, so a model that leaves the confidence out on the
  questions it gets wrong looks calibrated; coverage = stated / total says how much of the output they cover,
  and stated_wrong / wrong against stated_right / right shows a model that leaves it out selectively.
  """
  if len(confidences) != len(correct):
    raise ValueError(f"confidence_coverage: {len(confidences)} confidences for {len(correct)} verdicts")
  stated = np.array([c is not None for c in confidences], bool)
  right = np.asarray(correct, bool).reshape(stated.shape)
  total = int(stated.size)
  return {"stated": int(stated.sum()), "total": total,
          "coverage": float(stated.mean()) if total else float("nan"),
          "stated_right": int((stated & right).sum()), "right": int(right.sum()),
          "stated_wrong": int((stated & ~right).sum()), "wrong": int((~right).sum())}


def length_stats(lengths: np.ndarray) -> dict:
  """Mean, min, median, 90th percentile and max of completion lengths (tokens)."""
  lengths = np.asarray(lengths, np.float64)
  if lengths.size == 0:
    return {"mean": float("nan"), "min": float("nan"), "p50": float("nan"), "p90": float("nan"), "max": float("nan")}
  return {"mean": float(lengths.mean()), "min": float(lengths.min()), "p50": float(np.percentile(lengths, 50)),
          "p90": float(np.percentile(lengths, 90)), "max": float(lengths.max())}


def accuracy_by(keys: Sequence, correct: np.ndarray) -> dict:
  """{str(key): {"count", "accuracy"}} per distinct key (e.g. difficulty level), keys in sorted order."""
  correct = np.asarray(correct, bool)
  keys = list(keys)
  out = {}
  for key in sorted(set(keys)):
    hits = correct[[i for i, k in enumerate(keys) if k == key]]
    out[str(key)] = {"count": int(hits.size), "accuracy": float(hits.mean())}
  return out


def choice_confusion(predicted: Sequence[str | None], gold: Sequence[str], choices: Sequence[str]) -> dict:
  """Multiple choice: accuracy and confusion[gold][predicted] counts over `choices` plus "unparsed" (a
  prediction that is None or not one of the choices)."""
  if len(predicted) != len(gold):
    raise ValueError(f"choice_confusion: {len(predicted)} predictions for {len(gold)} gold answers")
  columns = list(choices) + ["unparsed"]
  confusion = {g: {c: 0 for c in columns} for g in choices}
  for p, g in zip(predicted, gold):
    if g not in confusion:
      raise ValueError(f"choice_confusion: gold answer {g!r} is not one of the choices {list(choices)}")
    confusion[g][p if p in choices else "unparsed"] += 1
  hits = [p == g for p, g in zip(predicted, gold)]
  return {"accuracy": float(np.mean(hits)) if hits else float("nan"), "confusion": confusion}
