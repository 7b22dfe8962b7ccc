"""Evaluation: sample held-out questions and check answers and rationale steps.

`evaluate_accuracy` is the trainers' greedy check; `python -m rr.eval` (rr.eval.run) evaluates a checkpoint
with pass@k, maj@k, CoT-pass@k, calibration and lengths (metrics in rr.eval.metrics).
"""

from rr.eval.accuracy import evaluate_accuracy
from rr.eval.run import EvalError, assemble
from rr.eval.scoring import Scored, score

__all__ = ["EvalError", "Scored", "assemble", "evaluate_accuracy", "score"]
