"""Dynamic sampling and difficulty filtering: which groups a step keeps, and how rounds fill the batch."""

import numpy as np

from rr.train.groups import Groups, collect_groups, keep_groups


def make_groups(totals, passed=None, valid=None, group_size=4, tag=0):
  """Groups whose rows carry `tag * 100 + row` as their only token, so tests can see where rows went."""
  totals = np.asarray(totals, np.float32)
  n = totals.size
  passed = np.asarray(passed if passed is not None else totals >= 1.0, bool)
  valid = np.asarray(valid if valid is not None else np.ones(n, bool), bool)
  num_groups = n // group_size
  return Groups(group_size, [[tag, g] for g in range(num_groups)], [f"ex{tag}.{r}" for r in range(n)],
                (tag * 100 + np.arange(n)).reshape(n, 1), np.ones(n, np.int32), np.zeros((n, 1), np.float32),
                totals[:, None], valid, totals, passed)


def test_dynamic_sampling_drops_groups_whose_rewards_are_all_equal():
  groups = make_groups([1, 1, 1, 1,  0, 1, 0, 0,  0, 0, 0, 0,  0.1, 0.1, 0.1, 0.1])
  np.testing.assert_array_equal(keep_groups(groups, drop_equal=True), [False, True, False, False])
  np.testing.assert_array_equal(keep_groups(groups, drop_equal=False), [True, True, True, True])


def test_equality_ignores_invalid_rows_and_a_group_with_no_valid_row_is_dropped():
  # Group 0 differs only on an invalid row, so for training it is flat; group 1 has no valid row at all.
  groups = make_groups([1, 1, 1, 0,  0, 1, 0, 1], valid=[1, 1, 1, 0,  0, 0, 0, 0])
  np.testing.assert_array_equal(keep_groups(groups, drop_equal=True), [False, False])
  np.testing.assert_array_equal(keep_groups(groups, drop_equal=False), [True, False])


def test_difficulty_filter_keeps_pass_rates_inside_the_band():
  # Pass rates 4/4, 1/4, 2/4, 0/4 and 3/4; band [0.25, 0.75] keeps groups 1, 2 and 4 (bounds included).
  passed = [1, 1, 1, 1,  1, 0, 0, 0,  1, 1, 0, 0,  0, 0, 0, 0,  1, 1, 1, 0]
  groups = make_groups(np.asarray(passed, np.float32), passed=passed)
  keep = keep_groups(groups, drop_equal=False, pass_rate_min=0.25, pass_rate_max=0.75)
  np.testing.assert_array_equal(keep, [False, True, True, False, True])
  # The pass rate counts valid rows only: 1 of 2 valid rows passed = 0.5, inside [0.5, 0.5].
  groups = make_groups([1, 0, 1, 1], passed=[1, 0, 1, 1], valid=[1, 1, 0, 0])
  np.testing.assert_array_equal(keep_groups(groups, drop_equal=False, pass_rate_min=0.5, pass_rate_max=0.5), [True])


def test_rounds_continue_until_the_batch_is_full_and_keep_order():
  rounds = {0: [0, 0, 0, 0,  1, 0, 1, 0],  # group 1 of round 0 kept
            1: [1, 1, 1, 1,  0, 0, 0, 0],  # nothing kept
            2: [0, 1, 1, 1,  1, 0, 0, 0]}  # both kept; only the first is needed
  calls = []

  def sample_round(r):
    calls.append(r)
    return make_groups(rounds[r], tag=r)

  out = collect_groups(sample_round, num_groups=2, max_rounds=5,
                       keep=lambda g: keep_groups(g, drop_equal=True))
  assert calls == [0, 1, 2] and out.rounds == 3 and out.kept == 3
  assert out.batch.prompts == [[0, 1], [2, 0]]
  np.testing.assert_array_equal(out.batch.tokens[:, 0], [4, 5, 6, 7, 200, 201, 202, 203])
  assert out.batch.examples[4:] == ["ex2.0", "ex2.1", "ex2.2", "ex2.3"]
  assert out.sampled.num_groups == 6


def test_when_rounds_run_out_the_batch_is_topped_up_with_dropped_groups():
  out = collect_groups(lambda r: make_groups([1, 1, 1, 1,  0, 1, 0, 0], tag=r), num_groups=2, max_rounds=1,
                       keep=lambda g: keep_groups(g, drop_equal=True))
  assert out.rounds == 1 and out.kept == 1
  # The kept group comes first, then the dropped one fills the batch to its fixed size.
  assert out.batch.prompts == [[0, 1], [0, 0]]
  np.testing.assert_array_equal(out.batch.total_N, [0, 1, 0, 0, 1, 1, 1, 1])


def test_a_round_that_fills_the_batch_exactly_is_the_last():
  # Round 0 keeps 1 group and round 1 the 1 still needed: the batch is full after 2 rounds, so no third
  # round is drawn (it would cost a sampling pass and change which prompts the step sees).
  rounds = {0: [0, 1, 0, 0,  1, 1, 1, 1], 1: [0, 0, 0, 0,  1, 0, 1, 1], 2: [0, 1, 0, 1,  0, 1, 1, 1]}
  calls = []

  def sample_round(r):
    calls.append(r)
    return make_groups(rounds[r], tag=r)

  out = collect_groups(sample_round, num_groups=2, max_rounds=3, keep=lambda g: keep_groups(g, drop_equal=True))
  assert calls == [0, 1] and out.rounds == 2 and out.kept == 2
  assert out.sampled.num_groups == 4 and out.sampled.tokens.shape[0] == 16  # samples drawn: 2 rounds x 2 x 4
  np.testing.assert_array_equal(out.batch.tokens[:, 0], [0, 1, 2, 3, 104, 105, 106, 107])
  # One round that fills the batch by itself is the only one.
  calls.clear()
  out = collect_groups(sample_round, num_groups=1, max_rounds=3, keep=lambda g: keep_groups(g, drop_equal=True))
  assert calls == [0] and out.rounds == 1 and out.sampled.num_groups == 2
