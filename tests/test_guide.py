"""Guide (rr.train.guide): the hinted prompt, the resample of all-failed groups trained without the hint, the
squashed importance-weighted term against hand numbers, and a short GRPO run with it on."""

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
from rr.train.guide import GUIDE_KEY, hinted_question, make_guide, masked_quantile
from rr.train.metrics import read_metrics
from rr.train.batch import TrainBatch
from rr.train.objectives import TERMS, Forward, Parts, batch_totals, make_objective
from scripted_rollouts import ScriptedSampler, scripted_collector
from test_grpo import grpo_config

TOKENIZER = CharTokenizer()
ADD = Example("12+34", "2+4+0=06\n1+3+0=04", "46")  # user-data examples (task ""): the verifier is exact match
ONE_STEP = Example("5+6", "5+6+0=11", "11")


def guide_config(**rl):
  config = base_config()
  config.rl.guide = True
  config.rl.update(rl)
  return config


# ------------------------------------------------------------------------------------------ the hint

def test_the_hint_is_the_first_ceil_fraction_of_the_steps_or_the_answer():
  many = Example("q", "\n".join(f"s{i}" for i in range(25)), "a")
  assert hinted_question(ADD, "rationale", 0.5) == "12+34 (hint: 2+4+0=06)"  # ceil(0.5 * 2) = 1 of 2 steps
  assert hinted_question(ONE_STEP, "rationale", 0.5) == "5+6 (hint: 5+6+0=11)"  # ceil(0.5 * 1) = 1
  assert hinted_question(ADD, "rationale", 1.0) == "12+34 (hint: 2+4+0=06; 1+3+0=04)"
  # 0.28 * 25 is 7.000000000000001 in floating point: the hint is 7 of the 25 steps, not 8.
  assert hinted_question(many, "rationale", 0.28) == "q (hint: s0; s1; s2; s3; s4; s5; s6)"
  assert hinted_question(many, "rationale", 0.29) == "q (hint: s0; s1; s2; s3; s4; s5; s6; s7)"  # ceil(7.25)
  assert hinted_question(ADD, "answer", 0.5) == "12+34 (answer: 46)"
  assert hinted_question(Example("7+1", "  \n", "8"), "rationale", 0.5) == "7+1 (answer: 8)"  # no steps: the answer


def test_make_guide_encodes_every_hinted_prompt_and_counts_its_hint_tokens():
  assert make_guide(base_config(), TOKENIZER, [ADD], 32) is None
  guide = make_guide(guide_config(guide_hint="rationale", guide_hint_fraction=0.5), TOKENIZER, [ADD, ONE_STEP], 32)
  assert guide.hinted_prompts == [TOKENIZER.encode("12+34 (hint: 2+4+0=06)\n"),
                                  TOKENIZER.encode("5+6 (hint: 5+6+0=11)\n")]
  assert guide.hint_tokens.tolist() == [len(" (hint: 2+4+0=06)"), len(" (hint: 5+6+0=11)")]  # one char, one token
  answer = make_guide(guide_config(guide_hint="answer"), TOKENIZER, [ADD], 32)
  assert answer.hinted_prompts == [TOKENIZER.encode("12+34 (answer: 46)\n")]
  assert answer.hint_tokens.tolist() == [len(" (answer: 46)")]
  with pytest.raises(ConfigError, match="guide_hint_fraction=0.0 gives a hint of no rationale steps"):
    make_guide(guide_config(guide_hint_fraction=0.0), TOKENIZER, [ADD], 32)
  with pytest.raises(ConfigError, match="has no verifier, so every group would count as failed"):
    make_guide(guide_config(rewards="format", reward_weights="1"), TOKENIZER, [ADD], 32)
  with pytest.raises(ConfigError, match="not config.rl.advantage='ppo'"):
    make_guide(guide_config(advantage="ppo"), TOKENIZER, [ADD], 32)
  # "5+6 (hint: 5+6+0=11)\n" is 21 tokens, "12+34 (hint: 2+4+0=06)\n" 23: a longest bucket of 22 takes only the first.
  with pytest.raises(ConfigError, match="question '12\\+34' 23 tokens, more than the sampler's longest prompt bucket "
                                        "\\(22\\)"):
    make_guide(guide_config(), TOKENIZER, [ONE_STEP, ADD], 32, longest_prompt=22)


# ------------------------------------------------------------------------------------------ the resample

C = 6  # max_new_tokens


def FakeSampler(*outputs):
  return ScriptedSampler(TOKENIZER, *outputs)


def collector_with(sampler):
  config = guide_config(group_size=2, prompts_per_step=2, max_new_tokens=C, rewards="correctness",
                        reward_weights="1.0", guide_hint_fraction=0.5)
  examples = [ADD, ONE_STEP]
  return scripted_collector(config, sampler, TOKENIZER, examples, guide=make_guide(config, TOKENIZER, examples, 16))


def test_only_all_failed_groups_are_resampled_with_the_hint_and_trained_on_the_plain_prompt():
  sampler = FakeSampler([("</think>46", -0.1), ("</think>4", -0.2),  # question 0: one right answer
                         ("</think>1", -0.3), ("</think>2", -0.4)],  # question 1: both wrong, so it is resampled
                        [("</think>11", -0.7), ("</think>3", -0.9)])  # its hinted resample: one right
  collector = collector_with(sampler)
  rollouts = collector.collect(None, step=4)
  assert len(sampler.calls) == 2
  hinted = sampler.calls[1]
  assert hinted.prompts == [TOKENIZER.encode("5+6 (hint: 5+6+0=11)\n")] and hinted.num_samples == 2
  want_key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(3), 4), 0), GUIDE_KEY)
  np.testing.assert_array_equal(jax.random.key_data(hinted.rng), jax.random.key_data(want_key))
  batch = rollouts.batch
  # Rows 2, 3: the plain prompt "5+6\n" (left-padded to 16 - 6 = 10 columns), then the hinted completion.
  plain = TOKENIZER.encode("5+6\n")
  for row, text in ((2, "</think>11"), (3, "</think>3")):
    ids = TOKENIZER.encode(text) + [TOKENIZER.eos_id]
    assert batch.tokens[row].tolist() == ([TOKENIZER.pad_id] * 6 + plain + ids
                                          + [TOKENIZER.pad_id] * (C - len(ids)))
  # Completion token j's log-prob is read at column 9 + j; rows 0, 1 stay the policy's, rows 2, 3 are guided.
  lengths = [len(TOKENIZER.encode(t)) + 1 for t in ("</think>46", "</think>4", "</think>11", "</think>3")]
  want_policy, want_guided = np.zeros((4, 16)), np.zeros((4, 16))
  for row, n in enumerate(lengths):
    (want_policy if row < 2 else want_guided)[row, 9:9 + n] = 1
  np.testing.assert_array_equal(batch.policy_mask, want_policy)
  np.testing.assert_array_equal(batch.guided_mask, want_guided)
  np.testing.assert_allclose(batch.behaviour_logp[2, 9:9 + lengths[2]], -0.7)  # the hinted sampler's
  assert batch.rewards.tolist() == [1.0, 0.0, 1.0, 0.0]  # the resample is scored as question 1's rollouts (11)
  assert rollouts.chosen.guided_N.tolist() == [False, False, True, True]
  assert rollouts.counts == {"sampled_tokens": 4 + 3 + 3 + 3 + 4 + 3, "demo_tokens": len(" (hint: 5+6+0=11)"),
                             "all_failed_groups": 1.0, "groups": 2.0}


def test_a_round_with_no_all_failed_group_samples_once_and_a_failed_resample_still_replaces():
  sampler = FakeSampler([("</think>46", -0.1)] * 2 + [("</think>11", -0.1)] * 2)
  rollouts = collector_with(sampler).collect(None, step=0)
  assert len(sampler.calls) == 1 and rollouts.batch.guided_mask is None and "demo_tokens" not in rollouts.counts
  sampler = FakeSampler([("</think>1", -0.1)] * 4, [("</think>2", -0.5)] * 4)  # every group fails, hinted too
  rollouts = collector_with(sampler).collect(None, step=0)
  assert sampler.calls[1].prompts == [TOKENIZER.encode("12+34 (hint: 2+4+0=06)\n"),
                                      TOKENIZER.encode("5+6 (hint: 5+6+0=11)\n")]
  assert rollouts.chosen.guided_N.all() and rollouts.batch.policy_mask.sum() == 0
  assert rollouts.counts["demo_tokens"] == len(" (hint: 2+4+0=06)") + len(" (hint: 5+6+0=11)")


# ------------------------------------------------------------------------------------------ the term

def test_masked_quantile_is_numpys_linear_quantile_of_the_masked_values():
  values = np.array([[0.3, 5.0, 1.2, 99.0], [0.7, -99.0, 2.5, 0.1]], np.float32)
  mask = np.array([[1, 0, 1, 0], [1, 0, 1, 1]], np.float32)
  kept = np.array([0.3, 1.2, 0.7, 2.5, 0.1])
  for q in (0.0, 0.5, 0.9, 1.0):
    assert float(masked_quantile(values, mask, q)) == pytest.approx(np.quantile(kept, q), rel=1e-6)
  assert float(masked_quantile(values, np.zeros_like(mask), 0.9)) == 1.0
  assert float(jax.jit(masked_quantile, static_argnums=2)(values, mask, 0.9)) == pytest.approx(np.quantile(kept, 0.9))


# Three rows of T = 4: row 0 the policy's, rows 1 and 2 guided. The log-ratios logp - behaviour_logp on the guided
# tokens are LOG_RATIO, so rho = exp(LOG_RATIO); 5 guided and 3 policy tokens.
POLICY = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
GUIDED = np.array([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
LOG_RATIO = np.array([[0, 0, 0, 0], [0.2, -0.5, 0, 0], [0.1, 0.7, -1.0, 0]], np.float32)
BEHAVIOUR = np.array([[-1, -2, -1, 0], [-1.5, -0.5, 0, 0], [-0.3, -2.0, -0.4, 0]], np.float32)
ADVANTAGES = np.array([0.5, 1.5, -0.8], np.float32)


def guide_batch(has_eos=(True, True, True)):
  return TrainBatch(tokens=np.zeros((3, 4), np.int32), positions=np.tile(np.arange(4, dtype=np.int32), (3, 1)),
                    policy_mask=POLICY, guided_mask=GUIDED, behaviour_logp=BEHAVIOUR, has_eos=np.array(has_eos),
                    advantages=ADVANTAGES)


def guide_loss(totals=None, has_eos=(True, True, True), **loss_cfg):
  """(loss, metrics, d loss / d logp) of the "guide" term alone, the policy's log-probs given directly."""
  parts = Parts(None, loss_cfg=PolicyLossConfig(**{"aggregation": "token-mean", **loss_cfg}))
  term = TERMS.get("guide")(guide_config(), parts)
  batch = guide_batch(has_eos)

  def loss_of(logp):
    fwd = Forward(parts, None, batch, None, None, totals)
    fwd.__dict__["logp"] = logp  # the cached property, set: no model runs
    return term(fwd)

  (loss, metrics), grad = jax.value_and_grad(loss_of, has_aux=True)(jnp.asarray(BEHAVIOUR + LOG_RATIO))
  return float(loss), {k: float(v) for k, v in metrics.items()}, np.asarray(grad)


def hand_numbers(mask=GUIDED):
  rho = np.exp(LOG_RATIO[mask > 0].astype(np.float64))
  gamma = np.quantile(rho, 0.9)
  advantage = np.broadcast_to(ADVANTAGES[:, None], mask.shape)[mask > 0]
  loss_t = -advantage * rho / (rho + gamma)
  grad_t = -advantage * gamma * rho / (rho + gamma) ** 2
  return rho, gamma, loss_t, grad_t


def test_the_guide_term_is_the_squashed_ratio_times_the_advantage_with_the_hand_gradient():
  rho, gamma, loss_t, grad_t = hand_numbers()
  loss, metrics, grad = guide_loss()
  # token-mean: the mean over the 5 guided tokens times their share 5 / (5 + 3) of the trained tokens.
  assert loss == pytest.approx(loss_t.mean() * 5 / 8, rel=1e-5)
  want_grad = np.zeros((3, 4))
  want_grad[GUIDED > 0] = grad_t / 8
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-9)  # nothing reaches the policy row or padding
  assert metrics["guide_gamma"] == pytest.approx(gamma, rel=1e-5)
  assert metrics["guide_rho_mean"] == pytest.approx(rho.mean(), rel=1e-5)
  assert metrics["guide_tokens"] == 5
  # A micro-batch of a batch of 10 guided and 6 policy tokens: its 5 tokens' part of the mean over 16.
  loss, _, grad = guide_loss(totals={"rows": 6.0, "policy": 6.0, "guided": 10.0})
  assert loss == pytest.approx(loss_t.sum() / 16, rel=1e-5)
  np.testing.assert_allclose(grad[GUIDED > 0], grad_t / 16, rtol=1e-5)


def test_policy_and_guide_terms_make_one_token_mean_over_every_trained_token():
  """At ratio 1 the policy term's per-token loss is -A; with the guide term the objective under token-mean is the
  sum of both terms' per-token losses over the 3 policy + 5 guided tokens, divided by 8 (not 3 and 5 apart)."""
  _, _, loss_t, _ = hand_numbers()
  parts = Parts(None, loss_cfg=PolicyLossConfig(aggregation="token-mean"))
  terms = [TERMS.get(name)(guide_config(), parts) for name in ("policy", "guide")]

  def total(totals):
    fwd = Forward(parts, None, guide_batch(), None, None, totals)
    fwd.__dict__["logp"] = jnp.asarray(BEHAVIOUR + LOG_RATIO)  # the cached properties, set: no model runs
    fwd.__dict__["entropy"] = jnp.zeros((3, 4))
    return float(sum(term(fwd)[0] for term in terms))

  policy_t = -np.broadcast_to(ADVANTAGES[:, None], POLICY.shape)[POLICY > 0]  # ratio 1: old_logp = sg(logp)
  assert total(None) == pytest.approx((policy_t.sum() + loss_t.sum()) / 8, rel=1e-5)
  # One micro-batch of a batch of 6 policy and 10 guided tokens: its part of the mean over 16.
  assert total({"rows": 6.0, "policy": 6.0, "guided": 10.0}) == pytest.approx((policy_t.sum() + loss_t.sum()) / 16,
                                                                                rel=1e-5)


def test_the_per_row_aggregations_weigh_a_guided_row_as_the_policy_term_weighs_its_rows():
  _, _, loss_t, _ = hand_numbers()
  row1, row2 = loss_t[:2], loss_t[2:]
  loss, _, _ = guide_loss(aggregation="seq-mean-token-mean")
  assert loss == pytest.approx((row1.mean() + row2.mean()) / 3, rel=1e-5)  # B = 3 rows, policy row included
  loss, _, _ = guide_loss(aggregation="seq-mean-token-sum-norm", max_completion_len=16)
  assert loss == pytest.approx(loss_t.sum() / (3 * 16), rel=1e-5)  # B * L_max, L_max = max_completion_len 16


def test_truncated_guided_rows_drop_out_with_mask_truncated_and_count_in_the_totals():
  truncated = GUIDED * np.array([1, 1, 0], np.float32)[:, None]  # row 2 ends without eos
  rho, gamma, loss_t, _ = hand_numbers(truncated)
  loss, metrics, grad = guide_loss(has_eos=(True, True, False), mask_truncated=True)
  assert metrics["guide_tokens"] == 2 and metrics["guide_gamma"] == pytest.approx(gamma, rel=1e-5)
  # The policy row has eos, so the share is 2 / (2 + 3).
  assert loss == pytest.approx(loss_t.mean() * 2 / 5, rel=1e-5) and not grad[2].any()
  parts = Parts(None, loss_cfg=PolicyLossConfig(mask_truncated=True))
  totals = batch_totals(guide_batch((True, True, False)), parts)
  assert float(totals["guided"]) == 2 and float(totals["policy"]) == 3


def test_no_guided_row_gives_zero_without_reading_the_policy():
  parts = Parts(None, loss_cfg=PolicyLossConfig(aggregation="token-mean"))
  term = make_objective(guide_config(), parts, ["guide"])
  batch = guide_batch().replace(guided_mask=None)
  # Parts has no model, so any read of the log-probs would fail: the term must not touch them.
  loss, metrics = term(None, batch, None, None)
  assert float(loss) == 0.0 and float(metrics["guide_tokens"]) == 0.0 and "guide_gamma" not in metrics
  assert "guided" not in batch_totals(batch, parts)
  # Guided rows that all drop out (truncated): zero loss, finite gamma and gradient.
  loss, metrics, grad = guide_loss(has_eos=(True, False, False), mask_truncated=True)
  assert loss == 0.0 and metrics["guide_gamma"] == 1.0 and metrics["guide_tokens"] == 0
  assert np.isfinite(grad).all() and not grad.any()


# ------------------------------------------------------------------------------------------ a run

def test_a_grpo_run_with_guide_resamples_failed_groups_and_trains_on_them(sft_workdir, tmp_path, length_reward):
  # The 12-step SFT student almost never answers right, so its groups all fail and Guide resamples them.
  config = grpo_config(sft_workdir, ("rl.guide", "true"), ("train.steps", "2"), ("rl.kl_beta", "0.0"),
                       ("eval.num_examples", "0"))
  workdir = str(tmp_path / "guide")
  summary = train.run(config, workdir)
  assert summary["finished"] and summary["step"] == 2
  rows = [r for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
  failed = [r for r in rows if r["train/frac_all_failed"] > 0]
  assert failed, "the test needs a step with an all-failed group"
  for r in failed:
    assert r["train/demo_tokens"] > 0 and r["train/guide_tokens"] > 0
    assert math.isfinite(r["train/guide_gamma"]) and r["train/guide_gamma"] > 0
  assert summary["total/demo_tokens"] == pytest.approx(sum(r["train/demo_tokens"] for r in rows))
