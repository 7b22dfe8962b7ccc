"""Evaluation metrics against brute force and hand-computed values."""

import itertools
import math

import numpy as np
import pytest

from rr.eval import metrics


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (4, 1), (5, 2), (6, 3), (6, 6), (7, 0)])
def test_pass_at_k_equals_enumerating_every_k_subset(n, c):
  samples = [True] * c + [False] * (n - c)
  for k in range(1, n + 1):
    subsets = list(itertools.combinations(samples, k))
    brute = sum(any(s) for s in subsets) / len(subsets)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)
  # The closed form of the paper, for one case by hand: n=5, c=2, k=2 -> 1 - C(3,2)/C(5,2) = 1 - 3/10.
  assert metrics.pass_at_k(5, 2, 2) == pytest.approx(0.7)
  assert math.isclose(metrics.pass_at_k(5, 2, 2), 1 - math.comb(3, 2) / math.comb(5, 2))


def test_pass_at_k_rejects_impossible_counts_and_averages_over_questions():
  with pytest.raises(ValueError, match="1 <= k <= n"):
    metrics.pass_at_k(4, 1, 5)
  with pytest.raises(ValueError, match="0 <= c <= n"):
    metrics.pass_at_k(4, 5, 1)
  correct = np.array([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
  # pass@2 per question: 1 - C(3,2)/C(4,2) = 0.5, 1, 0 -> mean 0.5; pass@1 = mean of c / n = (1/4 + 1 + 0) / 3.
  assert metrics.mean_pass_at_k(correct, 2) == pytest.approx(0.5)
  assert metrics.mean_pass_at_k(correct, 1) == pytest.approx(1.25 / 3)


def test_majority_vote_ties_go_to_the_first_seen_and_unparsed_never_wins():
  assert metrics.majority_vote(["7", "8", "8", "7"]) == "7"  # 2-2 tie: "7" appeared first
  assert metrics.majority_vote(["8", "7", "7", "8"]) == "8"
  assert metrics.majority_vote([None, None, "3"]) == "3"
  assert metrics.majority_vote([None, None]) is None
  answers = [["5", "6", "6", None], ["1", "2", "3", "3"], [None, None, None, None]]
  right = np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]], bool)
  # k=4: votes "6" (wrong), "3" (right), None -> 1/3. k=1: "5" right, "1" wrong, None -> 1/3.
  # k=2: "5" (tie, first seen, right), "1" (tie, first seen, wrong) -> 1/3. k=3: "6" wrong, "1" wrong -> 0.
  assert [metrics.maj_at_k(answers, right, k) for k in (1, 2, 3, 4)] == pytest.approx([1 / 3, 1 / 3, 0, 1 / 3])
  with pytest.raises(ValueError, match="only 4 samples"):
    metrics.maj_at_k(answers, right, 5)


def test_calibration_ece_and_brier_by_hand():
  conf = np.array([0.1, 0.15, 0.9, 0.95, 1.0])
  correct = np.array([0, 1, 1, 1, 0], bool)
  out = metrics.calibration(conf, correct, num_bins=2)
  # Bin [0, .5): confidence .125, accuracy .5, 2 of 5. Bin [.5, 1]: confidence .95, accuracy 2/3, 3 of 5.
  ece = 2 / 5 * abs(0.5 - 0.125) + 3 / 5 * abs(2 / 3 - 0.95)
  brier = np.mean([(0.1 - 0) ** 2, (0.15 - 1) ** 2, (0.9 - 1) ** 2, (0.95 - 1) ** 2, (1.0 - 0) ** 2])
  assert out["ece"] == pytest.approx(ece) and out["brier"] == pytest.approx(brier) and out["count"] == 5
  assert [b["count"] for b in out["bins"]] == [2, 3]
  assert out["bins"][1]["accuracy"] == pytest.approx(2 / 3)
  # Perfectly calibrated in every bin -> 0; nothing stated -> NaN, not an error.
  assert metrics.calibration([0.0, 1.0], [False, True], num_bins=10)["ece"] == pytest.approx(0.0)
  assert math.isnan(metrics.calibration([], [])["ece"])


def test_lengths_accuracy_by_key_and_choice_confusion():
  stats = metrics.length_stats(np.array([10, 20, 30, 40]))
  assert stats["mean"] == 25 and stats["min"] == 10 and stats["max"] == 40 and stats["p50"] == 25
  by = metrics.accuracy_by([2, 3, 2, 3, 3], np.array([1, 0, 1, 1, 0], bool))
  assert by == {"2": {"count": 2, "accuracy": 1.0}, "3": {"count": 3, "accuracy": pytest.approx(1 / 3)}}
  out = metrics.choice_confusion(["A", "B", None, "Z", "B"], ["A", "A", "B", "B", "B"], ["A", "B"])
  assert out["accuracy"] == pytest.approx(2 / 5)
  assert out["confusion"] == {"A": {"A": 1, "B": 1, "unparsed": 0}, "B": {"A": 0, "B": 1, "unparsed": 2}}


def test_confidence_coverage_by_hand():
  # 5 completions: confidences on 2 of the 3 right ones and on none of the 2 wrong ones -- the pattern of a
  # model that leaves the confidence out where it is wrong, which ECE and Brier alone cannot see.
  out = metrics.confidence_coverage([0.9, None, 0.8, None, None], [True, True, True, False, False])
  assert out == {"stated": 2, "total": 5, "coverage": 0.4, "stated_right": 2, "right": 3, "stated_wrong": 0,
                 "wrong": 2}
  assert metrics.confidence_coverage([0.0], [False])["coverage"] == 1.0  # a stated 0 is a stated confidence
  assert math.isnan(metrics.confidence_coverage([], [])["coverage"])
  with pytest.raises(ValueError, match="2 confidences for 1 verdicts"):
    metrics.confidence_coverage([0.5, 0.5], [True])
