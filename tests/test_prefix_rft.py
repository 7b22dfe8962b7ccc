"""Prefix-RFT (rr.train.prefix_rft): the cosine schedule and prefix lengths by hand, the prefixed rows laid out
after the policy's own in each group with their masks split, the entropy-selected prefix term against hand
numbers, and a short GRPO run with it on."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import train
from rr.config import ConfigError, base_config
from rr.data import CharTokenizer
from rr.losses import PolicyLossConfig
from rr.tasks import Example
from rr.train.batch import TrainBatch
from rr.train.metrics import read_metrics
from rr.train.objectives import TERMS, Forward, Parts, batch_totals, make_objective
from rr.train.prefix_rft import (PREFIX_KEY, make_prefixer, prefix_fractions, prefix_length, prefix_low,
                                 top_share_mask)
from scripted_rollouts import ScriptedSampler, scripted_collector
from test_grpo import grpo_config

TOKENIZER = CharTokenizer()
THINK_OPEN, THINK_CLOSE, EOS, PAD = 2, 3, TOKENIZER.eos_id, TOKENIZER.pad_id  # the char tokenizer's specials
NO_RATIONALE = Example("1+2", "", "3")  # user data: its demo is "<think></think>3" + eos, 4 tokens
SUM = Example("5+6", "5+6=11", "11")  # "<think>5+6=11</think>11" + eos, 11 tokens


def prefix_config(**rl):
  config = base_config()
  config.rl.prefix_rollouts = 1
  config.rl.update(rl)
  return config


# ------------------------------------------------------------------------------------------ the prefix lengths

def test_low_t_is_a_cosine_from_start_at_the_first_step_to_end_at_the_last():
  assert prefix_low(0, 11, 0.95, 0.05) == pytest.approx(0.95)
  assert prefix_low(5, 11, 0.95, 0.05) == pytest.approx(0.5)  # halfway: cos(pi / 2) = 0, the mean of the two
  assert prefix_low(10, 11, 0.95, 0.05) == pytest.approx(0.05)
  # A quarter of the way: 0.05 + 0.9 * (1 + cos(pi / 4)) / 2 = 0.05 + 0.45 * 1.7071067811865475.
  assert prefix_low(1, 5, 0.95, 0.05) == pytest.approx(0.8181980515339464)
  assert prefix_low(20, 11, 0.95, 0.05) == pytest.approx(0.05)  # past the last step it stays at the end
  assert prefix_low(0, 1, 0.95, 0.05) == pytest.approx(0.95)  # a one-step run has only the first step


def test_a_prefix_is_floor_l_times_the_demo_capped_before_its_eos_and_before_the_last_column():
  assert prefix_length(0.5, 10, 16) == 5
  assert prefix_length(0.55, 10, 16) == 5  # floor(5.5)
  assert prefix_length(0.7, 10, 16) == 7  # 0.7 * 10 is 7.000000000000001 in floating point
  assert prefix_length(0.29, 100, 200) == 29  # 0.29 * 100 is 28.999999999999996: still 29 tokens
  assert prefix_length(0.95, 10, 16) == 9
  assert prefix_length(1.0, 10, 16) == 9  # never the whole demo: its eos is the policy's to choose
  assert prefix_length(0.0, 10, 16) == 0
  assert prefix_length(0.9, 40, 16) == 15  # 36 > C - 1: the row keeps one column for the policy's own token


def test_the_fractions_are_uniform_in_low_high_and_a_function_of_the_round_key():
  key = jax.random.key(7)
  draws = prefix_fractions(key, 200, 0.3, 0.6)
  assert draws.min() >= 0.3 and draws.max() <= 0.6 and draws.std() > 0.05
  np.testing.assert_array_equal(draws, prefix_fractions(jax.random.key(7), 200, 0.3, 0.6))  # a resume draws the same
  assert not np.array_equal(draws, prefix_fractions(jax.random.fold_in(key, 1), 200, 0.3, 0.6))
  assert prefix_fractions(key, 3, 0.5, 0.5).tolist() == [0.5, 0.5, 0.5]


def test_make_prefixer_encodes_the_demonstrations_and_refuses_what_cannot_work():
  assert make_prefixer(base_config(), TOKENIZER, [SUM], 32) is None
  prefixer = make_prefixer(prefix_config(), TOKENIZER, [NO_RATIONALE, SUM], 32)
  assert [d.tolist() for d in prefixer.demos] == [[THINK_OPEN, THINK_CLOSE] + TOKENIZER.encode("3") + [EOS],
                                                  [THINK_OPEN] + TOKENIZER.encode("5+6=11") + [THINK_CLOSE]
                                                  + TOKENIZER.encode("11") + [EOS]]
  with pytest.raises(ConfigError, match="not config.rl.advantage='ppo'"):
    make_prefixer(prefix_config(advantage="ppo"), TOKENIZER, [SUM], 32)
  make_prefixer(prefix_config(advantage="ppo", prefix_loss="nll"), TOKENIZER, [SUM], 32)  # no advantage needed
  with pytest.raises(ConfigError, match="prefix_entropy_top=0.0 trains no prefix token"):
    make_prefixer(prefix_config(prefix_entropy_top=0.0), TOKENIZER, [SUM], 32)
  # "5+6\n" is 4 tokens and floor(0.95 * 11) = 10 prefix tokens (C = 48 does not cap it): 14 > a bucket of 13.
  with pytest.raises(ConfigError, match="question '5\\+6' up to 14 tokens, more than the sampler's longest prompt "
                                        "bucket \\(13\\)"):
    make_prefixer(prefix_config(max_new_tokens=48), TOKENIZER, [NO_RATIONALE, SUM], 32, longest_prompt=13)


# ------------------------------------------------------------------------------------------ the sampling

C = 8  # max_new_tokens


def FakeSampler(*outputs):
  return ScriptedSampler(TOKENIZER, *outputs)


def collector_with(sampler):
  """Groups of G = 3 with k = 1 prefixed row, l fixed at 0.5 (low = high), over the two questions."""
  config = prefix_config(group_size=3, prompts_per_step=2, max_new_tokens=C, rewards="correctness",
                         reward_weights="1.0", prefix_high=0.5, prefix_low_start=0.5, prefix_low_end=0.5)
  examples = [NO_RATIONALE, SUM]
  return scripted_collector(config, sampler, TOKENIZER, examples,
                            prefixer=make_prefixer(config, TOKENIZER, examples, 16))


def test_prefixed_rows_come_last_in_each_group_with_the_prefix_then_the_cut_continuation():
  sampler = FakeSampler([("</think>3", -0.1), ("</think>4", -0.2), ("</think>1", -0.3), ("</think>11", -0.4)],
                        [("3", -0.5),  # question 0 after its prefix "<think></think>" (floor(0.5 * 4) = 2)
                         ("1</think>11", -0.6)])  # question 1 after "<think>5+6=" (floor(0.5 * 11) = 5)
  collector = collector_with(sampler)
  rollouts = collector.collect(None, step=4)
  own, prefixed = sampler.calls
  assert own.prompts == [TOKENIZER.encode("1+2\n"), TOKENIZER.encode("5+6\n")] and own.num_samples == 2
  prefix_0, prefix_1 = [THINK_OPEN, THINK_CLOSE], [THINK_OPEN] + TOKENIZER.encode("5+6=")
  assert prefixed.prompts == [TOKENIZER.encode("1+2\n") + prefix_0, TOKENIZER.encode("5+6\n") + prefix_1]
  assert prefixed.num_samples == 1 and prefixed.max_new_tokens == own.max_new_tokens == C
  round_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(3), 4), 0)
  np.testing.assert_array_equal(jax.random.key_data(own.rng), jax.random.key_data(round_key))
  np.testing.assert_array_equal(jax.random.key_data(prefixed.rng),
                                jax.random.key_data(jax.random.fold_in(round_key, PREFIX_KEY)))
  chosen = rollouts.chosen
  # Rows 2 and 5 are the prefixed ones: prefix, then the continuation cut to the C - p columns left (row 5 keeps
  # "1</think>1" of "1</think>11" + eos, so it ends without eos).
  want_2 = prefix_0 + TOKENIZER.encode("3") + [EOS]
  want_5 = prefix_1 + TOKENIZER.encode("1") + [THINK_CLOSE] + TOKENIZER.encode("1")
  assert chosen.tokens[2].tolist() == want_2 + [PAD] * (C - 4) and chosen.tokens[5].tolist() == want_5
  assert chosen.prefix_len_N.tolist() == [0, 0, 2, 0, 0, 5]
  assert chosen.lengths.tolist() == [3, 3, 4, 3, 4, C]  # "</think>" is one token
  np.testing.assert_allclose(chosen.logprobs[2], [0, 0, -0.5, -0.5, 0, 0, 0, 0])  # 0 on the prefix
  np.testing.assert_allclose(chosen.logprobs[5], [0] * 5 + [-0.6] * 3)
  np.testing.assert_allclose(chosen.logprobs[3], [-0.3] * 3 + [0] * 5)  # question 1's own rows are rows 3, 4
  # The batch: completion token j is read at column 16 - 8 - 1 + j = 7 + j; prefix tokens to prefix_mask only.
  batch = rollouts.batch
  want_prefix, want_policy = np.zeros((6, 16)), np.zeros((6, 16))
  for row, (p, n) in enumerate(zip(chosen.prefix_len_N, chosen.lengths)):
    want_prefix[row, 7:7 + p] = 1
    want_policy[row, 7 + p:7 + n] = 1
  np.testing.assert_array_equal(batch.prefix_mask, want_prefix)
  np.testing.assert_array_equal(batch.policy_mask, want_policy)
  assert batch.has_eos.tolist() == [True, True, True, True, True, False]
  assert batch.rewards.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # row 2 answers 3, row 5 "1"
  # Sampled: the own rows' 3 + 3 + 3 + 4 tokens and the continuations' kept 2 + 3; the demo: the prefixes 2 + 5.
  assert rollouts.counts == {"sampled_tokens": 3 + 3 + 3 + 4 + 2 + 3, "demo_tokens": 2 + 5,
                             "all_failed_groups": 0.0, "groups": 2.0}


# ------------------------------------------------------------------------------------------ the term

PREFIX = np.array([[0, 1, 1, 1, 0],
                   [0, 0, 0, 0, 0],
                   [1, 1, 0, 0, 0]], np.float32)  # 5 prefix tokens
POLICY = np.array([[0, 0, 0, 0, 1],
                   [1, 1, 1, 0, 0],
                   [0, 0, 1, 1, 0]], np.float32)
ENTROPY = np.array([[9.0, 0.5, 2.0, 1.0, 9.0],  # 9 off the prefix: never selected
                    [9.0, 9.0, 9.0, 9.0, 9.0],
                    [3.0, 0.7, 9.0, 9.0, 9.0]], np.float32)
LOGP = np.array([[-0.1, -0.2, -0.3, -0.4, -0.5],
                 [-0.6, -0.7, -0.8, -0.9, -1.0],
                 [-1.1, -1.2, -1.3, -1.4, -1.5]], np.float32)
ADVANTAGES = np.array([0.5, -1.0, -2.0], np.float32)


def prefix_loss(totals=None, has_eos=(True, True, True), mask_truncated=False, **rl):
  """(loss, metrics, d loss / d logp) of the "prefix" term alone, the policy's log-probs and entropies given."""
  parts = Parts(None, loss_cfg=PolicyLossConfig(mask_truncated=mask_truncated))
  term = TERMS.get("prefix")(prefix_config(**rl), parts)
  batch = TrainBatch(tokens=np.zeros((3, 5), np.int32), positions=np.tile(np.arange(5, dtype=np.int32), (3, 1)),
                     policy_mask=POLICY, prefix_mask=PREFIX, has_eos=np.array(has_eos), advantages=ADVANTAGES)

  def loss_of(logp):
    fwd = Forward(parts, None, batch, None, None, totals)
    fwd.__dict__.update(logp=logp, entropy=jnp.asarray(ENTROPY))  # the cached properties, set: no model runs
    return term(fwd)

  (loss, metrics), grad = jax.value_and_grad(loss_of, has_aux=True)(jnp.asarray(LOGP))
  return float(loss), {k: float(v) for k, v in metrics.items()}, np.asarray(grad)


def test_the_top_share_mask_picks_the_ceil_share_highest_masked_values_ties_to_the_earlier():
  values = jnp.array([[5.0, 1.0, 4.0, 4.0], [9.0, 2.0, 4.0, 0.0]])
  mask = jnp.array([[1, 1, 1, 1], [0, 1, 1, 0]], jnp.float32)  # 6 masked; the 9 is off the mask
  pick = lambda share: np.asarray(top_share_mask(values, mask, share)).tolist()
  assert pick(0.5) == [[1, 0, 1, 1], [0, 0, 0, 0]]  # 3 of 6: 5, then the three 4s in position order
  assert pick(0.2) == [[1, 0, 1, 0], [0, 0, 0, 0]]  # ceil(1.2) = 2
  assert pick(1 / 6) == [[1, 0, 0, 0], [0, 0, 0, 0]]  # exactly 1
  # 0.3 of 50 is 15, but float32(0.3) * 50 is 15.000001, whose ceil would take 16.
  many = top_share_mask(jnp.arange(50.0).reshape(5, 10), jnp.ones((5, 10)), 0.3)
  assert np.asarray(many).reshape(-1).tolist() == [0.0] * 35 + [1.0] * 15
  assert pick(1.0) == np.asarray(mask).tolist()
  assert not np.asarray(top_share_mask(values, jnp.zeros((2, 4)), 0.5)).any()


def test_the_advantage_loss_on_the_highest_entropy_prefix_tokens_with_its_hand_gradient():
  # ceil(0.4 * 5) = 2 selected: entropy 3.0 at (2, 0) and 2.0 at (0, 2); the 9s are not prefix tokens.
  loss, metrics, grad = prefix_loss(prefix_entropy_top=0.4, prefix_weight=2.0)
  hand = -(0.5 * -0.3 + -2.0 * -1.1) / 2  # -mean of A_i logp_t over the two
  assert metrics == pytest.approx({"prefix_tokens": 5, "prefix_selected": 2, "prefix_loss": hand}, rel=1e-6)
  assert loss == pytest.approx(2.0 * hand, rel=1e-6)
  want = np.zeros((3, 5))
  want[0, 2], want[2, 0] = -2.0 * 0.5 / 2, -2.0 * -2.0 / 2  # weight * -A_i / selected
  np.testing.assert_allclose(grad, want, rtol=1e-6)
  # 0.2 of 5 is exactly 1 token, the 3.0; all of them with 1.0.
  loss, metrics, _ = prefix_loss(prefix_entropy_top=0.2)
  assert metrics["prefix_selected"] == 1 and loss == pytest.approx(-(-2.0 * -1.1), rel=1e-6)
  loss, metrics, _ = prefix_loss(prefix_entropy_top=1.0)
  everything = -(0.5 * (-0.2 - 0.3 - 0.4) + -2.0 * (-1.1 - 1.2)) / 5
  assert metrics["prefix_selected"] == 5 and loss == pytest.approx(everything, rel=1e-6)


def test_the_nll_loss_and_a_micro_batchs_share_by_prefix_tokens():
  loss, metrics, grad = prefix_loss(prefix_entropy_top=0.4, prefix_loss="nll")
  assert loss == pytest.approx(-(-0.3 - 1.1) / 2, rel=1e-6) and metrics["prefix_selected"] == 2
  want = np.zeros((3, 5))
  want[0, 2] = want[2, 0] = -1 / 2
  np.testing.assert_allclose(grad, want, rtol=1e-6)
  # One micro-batch holding 5 of a batch's 20 prefix tokens: a quarter of its own mean.
  loss, _, grad = prefix_loss(totals={"rows": 12.0, "policy": 28.0, "prefix": 20.0}, prefix_entropy_top=0.4,
                              prefix_loss="nll")
  assert loss == pytest.approx(-(-0.3 - 1.1) / 2 * 5 / 20, rel=1e-6)
  np.testing.assert_allclose(grad, want * 5 / 20, rtol=1e-6)


def test_truncated_rows_prefixes_drop_out_with_mask_truncated_and_count_in_the_totals():
  loss, metrics, grad = prefix_loss(has_eos=(True, True, False), mask_truncated=True, prefix_entropy_top=0.4)
  # Row 2 is truncated: of row 0's 3 prefix tokens ceil(1.2) = 2 remain selected, entropies 2.0 and 1.0.
  assert metrics["prefix_tokens"] == 3 and metrics["prefix_selected"] == 2 and not grad[2].any()
  assert loss == pytest.approx(-(0.5 * -0.3 + 0.5 * -0.4) / 2, rel=1e-6)
  batch = TrainBatch(tokens=np.zeros((3, 5), np.int32), positions=np.zeros((3, 5), np.int32), policy_mask=POLICY,
                     prefix_mask=PREFIX, has_eos=np.array([True, True, False]))
  assert float(batch_totals(batch, Parts(None, loss_cfg=PolicyLossConfig(mask_truncated=True)))["prefix"]) == 3
  assert float(batch_totals(batch, Parts(None))["prefix"]) == 5


def test_no_prefixed_row_gives_zero_without_reading_the_policy():
  parts = Parts(None)
  objective = make_objective(prefix_config(), parts, ["prefix"])
  batch = TrainBatch(tokens=np.zeros((3, 5), np.int32), positions=np.zeros((3, 5), np.int32), policy_mask=POLICY,
                     has_eos=np.ones(3, bool), advantages=ADVANTAGES)
  loss, metrics = objective(None, batch, None, None)  # Parts has no model: any read of logp or entropy would fail
  assert float(loss) == 0.0 and float(metrics["prefix_tokens"]) == 0.0 and float(metrics["prefix_selected"]) == 0.0
  assert "prefix" not in batch_totals(batch, parts)


# ------------------------------------------------------------------------------------------ a run

def test_a_grpo_run_with_prefix_rollouts_trains_on_the_demonstration_prefixes(sft_workdir, tmp_path, length_reward):
  config = grpo_config(sft_workdir, ("rl.prefix_rollouts", "1"), ("train.steps", "2"), ("rl.kl_beta", "0.0"),
                       ("eval.num_examples", "0"))
  workdir = str(tmp_path / "prefix")
  summary = train.run(config, workdir)
  assert summary["finished"] and summary["step"] == 2
  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
  assert len(rows) == 2
  for r in rows:
    # One sampling round: the batch's prefix tokens are all the demonstration tokens the step gave.
    assert r["train/prefix_tokens"] > 0 and r["train/demo_tokens"] == r["train/prefix_tokens"]
    assert r["train/prefix_selected"] == math.ceil(0.2 * r["train/prefix_tokens"])
    assert math.isfinite(r["train/prefix_loss"]) and math.isfinite(r["train/loss"])
  assert summary["total/demo_tokens"] == pytest.approx(sum(r["train/demo_tokens"] for r in rows))
