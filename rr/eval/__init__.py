"""Evaluation: sample held-out questions and check answers and rationale steps."""

from rr.eval.accuracy import evaluate_accuracy, score_completion

__all__ = ["evaluate_accuracy", "score_completion"]
