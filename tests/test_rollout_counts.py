"""What issue 14's methods share in the collector and the loop: the prefix / guided masks of a rollout batch, the
all-failed groups, the per-step token counts and the sampled-token budget (rl.max_sampled_tokens)."""

import os

import numpy as np
import pytest

from rr import train
from rr.config import ConfigError, apply_overrides, load_config
from rr.train.batch import rollout_batch
from rr.train.groups import Groups
from rr.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRPO = os.path.join(ROOT, "configs", "grpo.py")
PAD, EOS = 0, 9


def test_a_prefixed_row_splits_its_completion_between_prefix_and_policy_masks_and_a_guided_row_leaves_policy():
  # Two prompts x 2 samples, width 8 = 3 prompt columns + C = 5. Completion tokens 11.. ; row lengths 4, 3, 5, 2.
  tokens = np.array([[11, 12, 13, EOS, 0], [21, 22, EOS, 0, 0], [31, 32, 33, 34, 35], [41, EOS, 0, 0, 0]], np.int32)
  lengths = np.array([4, 3, 5, 2])
  batch = rollout_batch([[1, 2], [3]], 2, tokens, lengths, np.zeros((4, 5), np.float32), EOS, PAD, 8,
                        prefix_len_N=np.array([0, 2, 0, 0]), guided_N=np.array([False, False, True, True]))
  # The log-prob of completion token j is read at column 2 + j (the prompt ends at column 2).
  want_policy = np.zeros((4, 8), np.float32)
  want_policy[0, 2:6] = 1  # all 4 tokens
  want_policy[1, 4:5] = 1  # token 2 (eos); tokens 0 and 1 are the prefix
  want_prefix = np.zeros((4, 8), np.float32)
  want_prefix[1, 2:4] = 1
  want_guided = np.zeros((4, 8), np.float32)
  want_guided[2, 2:7] = 1
  want_guided[3, 2:4] = 1
  np.testing.assert_array_equal(batch.policy_mask, want_policy)
  np.testing.assert_array_equal(batch.prefix_mask, want_prefix)
  np.testing.assert_array_equal(batch.guided_mask, want_guided)
  assert batch.tokens[1].tolist() == [PAD, 1, 2, 21, 22, EOS, PAD, PAD]  # the row is laid out as any other
  assert batch.has_eos.tolist() == [True, True, False, True]
  plain = rollout_batch([[1, 2], [3]], 2, tokens, lengths, np.zeros((4, 5), np.float32), EOS, PAD, 8,
                        prefix_len_N=np.zeros(4, np.int32), guided_N=np.zeros(4, bool))
  assert plain.prefix_mask is None and plain.guided_mask is None  # a plain step's compiled batch carries neither
  np.testing.assert_array_equal(plain.policy_mask, want_policy + want_prefix + want_guided)


def test_a_group_has_all_failed_when_no_valid_row_passed():
  passed = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0], bool)
  valid = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1], bool)  # group 2's only pass failed its reward
  n = 12
  groups = Groups(4, [[0], [1], [2]], list(range(n)), np.zeros((n, 1), np.int32), np.ones(n, np.int32),
                  np.zeros((n, 1), np.float32), np.zeros((n, 1), np.float32), valid, np.zeros(n, np.float32), passed)
  assert groups.all_failed.tolist() == [True, False, True]
  assert groups.prefix_len_N.tolist() == [0] * n and not groups.guided_N.any()  # neither kind unless set
  assert groups.take([1]).all_failed.tolist() == [False]


def test_the_run_stops_once_it_has_sampled_its_token_budget_and_counts_every_step(tmp_path, length_reward):
  config = load_config(GRPO + ":runlocal")
  apply_overrides(config, [("rl.rewards", "length"), ("rl.reward_weights", "1.0"), ("train.steps", "6"),
                           ("train.eval_every", "0"), ("eval.num_examples", "0"), ("rl.max_sampled_tokens", "40")])
  workdir = str(tmp_path / "budget")
  summary = train.run(config, workdir)
  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/sampled_tokens" in r]
  per_step = [r["train/sampled_tokens"] for r in rows]  # runlocal logs every step
  assert summary["finished"] and summary["step"] == len(rows) < 6
  # 2 prompts x 4 completions of <= 16 tokens: at most 128 a step, so the budget of 40 is reached within a step or
  # two, and the run stops at the first step that reaches it.
  assert sum(per_step) >= 40 and sum(per_step[:-1]) < 40
  assert [r["train/total_sampled_tokens"] for r in rows] == pytest.approx(np.cumsum(per_step))
  assert summary["total/sampled_tokens"] == pytest.approx(sum(per_step))
  assert summary["total/demo_tokens"] == 0.0  # plain GRPO gives the policy no demonstration
  assert all(0.0 <= r["train/frac_all_failed"] <= 1.0 for r in rows)
  # Resumed with a larger budget it continues from the saved totals, not from 0.
  apply_overrides(config, [("rl.max_sampled_tokens", str(int(sum(per_step)) + 1))])
  again = train.run(config, workdir)
  more = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/sampled_tokens" in r]
  assert again["step"] == summary["step"] + 1 and len(more) == len(rows) + 1
  assert again["total/sampled_tokens"] == pytest.approx(sum(per_step) + more[-1]["train/sampled_tokens"])


def test_a_negative_budget_is_refused_naming_the_key():
  with pytest.raises(ConfigError, match="config.rl.max_sampled_tokens=-1"):
    apply_overrides(load_config(GRPO + ":runlocal"), [("rl.max_sampled_tokens", "-1")])
