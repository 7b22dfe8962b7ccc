"""Evaluation: sample held-out questions and check answers and rationale steps.

`evaluate(checkpoint, config)` is `python -m rr.eval` from Python: pass@k, maj@k, CoT-pass@k, calibration and
lengths of a checkpoint (rr.eval.run; metrics in rr.eval.metrics), written to eval.json and returned as a dict.
`load(checkpoint)` gives a Policy whose `complete` samples completions as rr.eval does. `evaluate_accuracy` is the
trainers' greedy check.
"""

from rr.eval.accuracy import evaluate_accuracy
from rr.eval.run import EvalError, assemble, evaluate
from rr.eval.policy import Policy, load
from rr.eval.scoring import Scored, score

__all__ = ["EvalError", "Policy", "Scored", "assemble", "evaluate", "evaluate_accuracy", "load", "score"]
