"""Rewards: every built-in and combinator against numbers worked out by hand, and score_rewards on bad rows."""

import jax
import numpy as np
import pytest

from rr import rewards
from rr.tasks import Example, get_task


@pytest.fixture(scope="module")
def example():
  # 865+673=1538, rationale "5+3+0=08\n6+7+0=13\n8+6+1=15"
  ex = get_task("addition").generate(np.random.default_rng(0), 3)
  assert (ex.question, ex.answer) == ("865+673", "1538")
  return ex


GOOD = "<think>5+3+0=08\n6+7+0=13\n8+6+1=15</think>1538"
WRONG = "<think>5+3+0=08\n6+7+0=13\n8+6+0=14</think>1438"  # last step drops the carry: 2 of 3 steps right
BARE = "1538"  # right answer, no think block
EMPTY = "<think>5+3+0=08</think>  "  # one right step, no answer


def call(reward, completions, examples):
  return reward([""] * len(completions), completions, examples)


def test_correctness_format_steps(example):
  completions = [GOOD, WRONG, BARE, EMPTY]
  exs = [example] * 4
  np.testing.assert_allclose(call(rewards.correctness(), completions, exs), [1, 0, 1, 0])
  np.testing.assert_allclose(call(rewards.format_reward(), completions, exs), [1, 1, 0, 0])
  # EMPTY writes one right step of the three its chain needs: the two missing steps count as wrong ones
  np.testing.assert_allclose(call(rewards.step_correctness(), completions, exs), [1, 2 / 3, 0, 1 / 3], rtol=1e-6)
  assert call(rewards.format_reward(), ["<think>a</think>1<think>b</think>2"], [example])[0] == 0


def test_correctness_user_data_and_confidence_line(example):
  user = Example(question="q", rationale="", answer="the  cat")
  out = call(rewards.correctness(), ["<think>x</think> the cat ", "<think>x</think>the dog"], [user, user])
  np.testing.assert_allclose(out, [1, 0])
  assert call(rewards.correctness(), [GOOD + "\nconfidence: 0.8"], [example])[0] == 1
  assert call(rewards.step_correctness(), [GOOD], [user])[0] == 0  # user data has no step checker


def token_call(reward, lengths, width=12):
  """A TokenReward on rows of `lengths` generated tokens (ids 7, then pads), as score_rewards calls it."""
  mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
  return reward(np.where(mask, 7, 0).astype(np.int32), mask)


def test_length_penalty_counts_sampled_tokens():
  # target 4, scale 0.5: -0.5 * max(0, L - 4) / 4, L = generated tokens
  np.testing.assert_allclose(token_call(rewards.length_penalty(4, 0.5), [0, 4, 6, 12]), [0, 0, -0.25, -1])
  assert isinstance(rewards.length_penalty(4), rewards.TokenReward)
  with pytest.raises(ValueError):
    rewards.length_penalty(0)


def test_overlong_shaping_three_regimes():
  # Lmax = 10, Lc = 4: soft limit 6
  out = token_call(rewards.overlong_shaping(10, 4), [0, 6, 7, 8, 10, 11])
  np.testing.assert_allclose(out, [0, 0, -0.25, -0.5, -1, -1])
  with pytest.raises(ValueError):
    rewards.overlong_shaping(4, 5)


def test_length_rewards_read_the_sampled_ids_not_the_reencoded_text(example):
  """The sampler wrote "<think>" as 7 character tokens, then "1538" and eos, then pads: 12 generated tokens
  (eos counts). Decoding and re-encoding gives 5 ("<think>" merges into one token, eos and pads drop)."""
  from rr.config import base_config
  from rr.data import decode_completion
  from rr.data.tokenizers import CharTokenizer
  from rr.train import grpo

  tok = CharTokenizer()
  ids = [i for ch in "<think>" for i in tok.encode(ch)] + tok.encode("1538") + [tok.eos_id]
  tokens = np.array([ids + [tok.pad_id] * 4], np.int32)
  mask = np.arange(tokens.shape[1])[None, :] < len(ids)
  text = decode_completion(tok, tokens[0])
  assert text == "<think>1538" and len(ids) == 12 and len(tok.encode(text)) == 5
  rl = base_config().rl
  rl.rewards, rl.reward_weights = "overlong,length_penalty", "1,1"
  rl.max_new_tokens, rl.overlong_buffer, rl.length_target = 12, 8, 6
  fns, _ = grpo.build_rewards(rl, tok)
  r, valid, failures = rewards.score_rewards(fns, ["p"], [text], [example], tokens_NxC=tokens, mask_NxC=mask)
  assert valid.all() and not failures
  # overlong: soft limit 12 - 8 = 4, L = 12 = Lmax -> -1 (5 re-encoded tokens would give -0.125).
  # length_penalty: -(12 - 6) / 6 = -1 (5 re-encoded tokens would give 0).
  np.testing.assert_allclose(r[0], [-1.0, -1.0])


def test_calibration_forms(example):
  completions = [GOOD + "\nconfidence: 0.8", WRONG + "\nConfidence: 0.8", GOOD + "\nconfidence: 1",
                 GOOD, GOOD + "\nconfidence: 1.5", WRONG + "\nconfidence: 0"]
  exs = [example] * 6
  # rlcr y - (c - y)^2: 1 - 0.04, 0 - 0.64, 1, no confidence -1, out of range -1, 0 - 0
  np.testing.assert_allclose(call(rewards.calibration(), completions, exs), [0.96, -0.64, 1, -1, -1, 0],
                             rtol=1e-6, atol=1e-7)
  # brier 1 - 2 (correct - c)^2: 1 - 2*0.04, 1 - 2*0.64, 1; unparsable -> -1; a sure wrong answer gets the max 1
  np.testing.assert_allclose(call(rewards.calibration("brier"), completions, exs), [0.92, -0.28, 1, -1, -1, 1],
                             rtol=1e-6)
  np.testing.assert_allclose(call(rewards.calibration("linear"), completions, exs), [0.8, -0.8, 1, -1, -1, 0],
                             rtol=1e-6)
  assert [rewards.calibration(m).name for m in ("rlcr", "brier", "linear")] == [
      "calibration", "calibration_brier", "calibration_linear"]
  assert rewards.split_confidence("1538\nconfidence: .25") == ("1538", 0.25)
  with pytest.raises(ValueError, match="rlcr"):
    rewards.calibration("sayself")


def test_stated_confidence_reads_only_the_answer_part(example):
  assert rewards.stated_confidence(GOOD + "\nconfidence: 0.7") == 0.7
  assert rewards.stated_confidence("<think>5+3+0=08\nconfidence: 0.7") is None  # never closed: no answer
  assert rewards.stated_confidence(GOOD + "\nconfidence: 0.7\nconfidence: 0.7") is None
  unclosed = "<think>5+3+0=08\nconfidence: 0"  # wrong and "sure of it", but it never gave an answer
  assert call(rewards.calibration(), [unclosed], [example])[0] == -1


def test_config_name_calibration_is_rlcr_and_the_old_forms_keep_explicit_names(example):
  sure_wrong, right = WRONG + "\nconfidence: 0", GOOD + "\nconfidence: 0.5"
  got = {name: call(rewards.build_reward(name, None, None), [sure_wrong, right], [example] * 2)
         for name in ("calibration", "calibration_brier", "calibration_linear")}
  np.testing.assert_allclose(got["calibration"], [0, 0.75])  # 0 - 0^2; 1 - 0.5^2
  np.testing.assert_allclose(got["calibration_brier"], [1, 0.5])  # the sure wrong answer's maximum
  np.testing.assert_allclose(got["calibration_linear"], [0, 0.5])


def test_gate_and_weighted_sum():
  np.testing.assert_allclose(rewards.gate([1, 1, 0], [1, 0, 1], [0.5, 1, 0.25]), [2.5, 1, 1.25])
  np.testing.assert_allclose(jax.jit(rewards.weighted_sum)(np.array([[1, 2], [3, 4]]), np.array([0.5, 2])),
                             [4.5, 9.5])


def test_normalize_then_sum():
  r = np.array([[1, 0], [3, 0], [2, 5], [2, 1]], np.float32)
  # group 1: col 0 [1, 3] -> mean 2, std 1 -> [-1, 1]; col 1 equal -> 0.
  # group 2: col 0 equal -> 0; col 1 [5, 1] -> mean 3, std 2 -> [1, -1], weight 2 -> [2, -2].
  fn = jax.jit(rewards.normalize_then_sum, static_argnums=2)
  np.testing.assert_allclose(fn(r, np.array([1.0, 2.0]), 2), [-1, 1, 2, -2], atol=1e-5)
  # invalid row 2 is left out of its group's mean/std ([1, 3] -> [-1, 1]) and gets 0
  out = rewards.normalize_then_sum(np.array([[1], [3], [100]]), np.array([1.0]), 3,
                                   valid_N=np.array([True, True, False]))
  np.testing.assert_allclose(out, [-1, 1, 0], atol=1e-5)
  with pytest.raises(ValueError, match="group size 3"):
    rewards.normalize_then_sum(r, np.array([1.0, 1.0]), 3)


def test_gated_sum_keeps_each_weight_and_gates_only_the_process_columns():
  # columns (format, correctness, step_correctness, length), weights (0.5, 2, 3, 1)
  r = np.array([[1, 1, 0.5, -1], [1, 0, 1, 0], [0, 1, 0.25, 0]], np.float32)
  w = np.array([0.5, 2, 3, 1], np.float32)
  # row 0: 0.5 + 2 + 3 * 0.5 - 1 = 3; row 1: 0.5 + 0 + 0 (wrong: process gated off) = 0.5; row 2: 2 + 0.75
  np.testing.assert_allclose(rewards.gated_sum(r, w, 1, (2,)), [3, 0.5, 2.75])
  # weights 1 on (format, outcome, process) are Posterior-GRPO's R_f + R_o + R_o * R_p
  np.testing.assert_allclose(rewards.gated_sum(r[:, :3], np.ones(3), 1, (2,)), rewards.gate(r[:, 0], r[:, 1], r[:, 2]))


def test_each_combination_mode_by_hand():
  # columns (correctness, step_correctness), one group of 2 then one of 2; row 3 invalid (a reward failed)
  r = np.array([[1, 1], [0, 0.5], [0, 1], [0, 0]], np.float32)
  valid = np.array([True, True, True, False])
  w = np.array([1.0, 2.0], np.float32)
  np.testing.assert_allclose(rewards.Combination("weighted_sum", w)(r, valid), [3, 1, 2, 0])
  # group 1: correctness [1, 0] -> [1, -1]; steps [1, .5] -> [1, -1], weight 2. Group 2: only row 2 valid: 0.
  np.testing.assert_allclose(rewards.Combination("normalize_then_sum", w, group_size=2)(r, valid), [3, -3, 0, 0],
                             atol=1e-4)
  # gate: steps count only where correctness is 1: [1 + 2, 0, 0, 0]
  gate = rewards.Combination("gate", w, outcome_column=0, process_columns=(1,))
  np.testing.assert_allclose(gate(r, valid), [3, 0, 0, 0])
  with pytest.raises(ValueError, match="not one of"):
    rewards.Combination("product", w)
  with pytest.raises(ValueError, match="process column"):
    rewards.Combination("gate", w, outcome_column=0)


def _rl_config(rewards_, weights, combine):
  from rr.config import base_config

  rl = base_config().rl
  rl.rewards, rl.reward_weights, rl.reward_combine = rewards_, weights, combine
  rl.prompts_per_step, rl.group_size = 1, 2
  return rl


@pytest.mark.parametrize("combine, want", [
    ("weighted_sum", [3, 1 + 2 / 3]),  # format + correctness + steps
    ("normalize_then_sum", [2, -2]),  # format equal -> 0; correctness and steps each [1, -1]
    ("gate", [3, 1]),  # the wrong answer's 2 of 3 right steps count for nothing
])
def test_config_reward_combine_reaches_the_rl_step_totals(example, combine, want):
  """RolloutCollector.sample_round totals the rounds' rewards with `rl.reward_combine`; the sampler is replaced by
  one that returns two fixed completions of the addition question, so no model is built."""
  from types import SimpleNamespace

  from rr.data.tokenizers import CharTokenizer
  from rr.sampler import SampleOutput
  from rr.train import grpo
  from rr.train.collector import RolloutCollector
  from rr.train.groups import make_keep
  from rr.train.sources import UniformPrompts

  tok = CharTokenizer()
  rl = _rl_config("format,correctness,step_correctness", "1,1,1", combine)
  fns, weights = grpo.build_rewards(rl, tok)
  ids = [tok.encode(text) + [tok.eos_id] for text in (GOOD, WRONG)]
  width = max(map(len, ids))
  tokens = np.array([row + [tok.pad_id] * (width - len(row)) for row in ids], np.int32)

  out = SampleOutput(tokens=tokens, lengths=np.array([len(row) for row in ids], np.int32),
                     logprobs=np.zeros(tokens.shape, np.float32), model_logprobs=np.zeros(tokens.shape, np.float32),
                     prompt_index=np.zeros(2, np.int32))

  sampler = lambda *args, **kwargs: out  # noqa: E731
  source = UniformPrompts(SimpleNamespace(seed=0, rl=rl), [example])
  collector = RolloutCollector(rl, sampler, tok, [tok.encode(example.question)], [example], source, fns,
                               grpo.build_combination(rl, fns, weights), make_keep(rl), width=64, seed=0,
                               max_rounds=1)
  assert collector.correctness_column == 1
  groups, failures, _ = collector.sample_round(None, 0, 0)
  assert not failures
  np.testing.assert_allclose(groups.total_N, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rewards_, weights, combine, message", [
    ("format,step_correctness", "1,1", "gate", "lacks correctness"),
    ("format,correctness", "1,1", "gate", "lacks step_correctness"),
    ("correctness", "1", "sum", r"reward_combine='sum' is not one of"),
])
def test_reward_combine_config_errors(rewards_, weights, combine, message):
  from rr.config import ConfigError
  from rr.train import grpo

  with pytest.raises(ConfigError, match=message):
    grpo.build_rewards(_rl_config(rewards_, weights, combine), None)


def test_score_rewards_keeps_good_rows(example):
  def explodes(prompts, completions, examples):
    if "boom" in completions:
      raise RuntimeError("parser choked")
    return np.ones(len(completions))

  def nan_on_wrong(prompts, completions, examples):
    return np.array([np.nan if c == WRONG else 0.5 for c in completions])

  completions = [GOOD, "boom", WRONG, BARE]
  fns = [rewards.correctness(), explodes, nan_on_wrong]
  r, valid, failures = rewards.score_rewards(fns, [""] * 4, completions, [example] * 4)
  np.testing.assert_allclose(r, [[1, 1, 0.5], [0, 0, 0.5], [0, 1, 0], [1, 1, 0.5]])
  np.testing.assert_array_equal(valid, [True, False, False, True])
  assert [(f.reward, f.row) for f in failures] == [("explodes", 1), ("nan_on_wrong", 2)]
  assert "parser choked" in failures[0].error
  metrics = rewards.reward_metrics(fns, r, valid)
  assert metrics["rewards/correctness/mean"] == 1.0 and metrics["rewards/invalid_frac"] == 0.5
  # /std is TRL's: ddof 1. Rewards 1, 0, 0: mean 1/3, squared deviations 4/9 + 1/9 + 1/9 over 3 - 1 -> 1/3.
  three = rewards.reward_metrics(fns[:1], np.array([[1.0], [0.0], [0.0]]), np.ones(3, bool))
  assert three["rewards/correctness/std"] == pytest.approx(np.sqrt(1 / 3))


def test_token_rewards_are_jitted_over_ids_and_can_carry_params(example):
  tokens = np.array([[7, 7, 3, 1], [7, 2, 1, 0], [5, 1, 0, 0]], np.int32)
  mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
  count_7 = rewards.TokenReward("sevens", lambda t, m, p: jax.numpy.sum((t == 7) & m, axis=1).astype(float))
  # A "model-based" reward: a learned weight per token id, summed over the generated tokens.
  weights = np.zeros(8, np.float32)
  weights[[7, 5, 1]] = [0.5, 2.0, -1.0]
  scored = rewards.TokenReward("weights", lambda t, m, p: jax.numpy.sum(p["w"][t] * m, axis=1), {"w": weights})
  n = len(tokens)
  out, valid, failures = rewards.score_rewards([count_7, scored, rewards.correctness()], ["p"] * n,
                                               [GOOD] * n, [example] * n,
                                               tokens_NxC=tokens, mask_NxC=mask)
  np.testing.assert_allclose(out[:, 0], [2, 1, 0])
  np.testing.assert_allclose(out[:, 1], [0.5 + 0.5 - 1.0, 0.5 - 1.0, 2.0 - 1.0])
  np.testing.assert_allclose(out[:, 2], [1, 1, 1])
  assert valid.all() and not failures


def test_a_failing_or_nan_token_reward_marks_rows_and_keeps_the_rest(example):
  tokens = np.array([[4, 1], [5, 1]], np.int32)
  mask = np.ones((2, 2), bool)
  nan_on_5 = rewards.TokenReward("nan5", lambda t, m, p: jax.numpy.where(t[:, 0] == 5, jax.numpy.nan, 1.0))
  wrong_shape = rewards.TokenReward("bad", lambda t, m, p: jax.numpy.ones((3,)))
  out, valid, failures = rewards.score_rewards([nan_on_5], ["p"] * 2, ["a", "b"], [example] * 2,
                                               tokens_NxC=tokens, mask_NxC=mask)
  np.testing.assert_array_equal(valid, [True, False])
  np.testing.assert_array_equal(out[:, 0], [1.0, 0.0])
  assert [(f.reward, f.row) for f in failures] == [("nan5", 1)]
  out, valid, failures = rewards.score_rewards([rewards.correctness(), wrong_shape], ["p"] * 2, ["a", "b"],
                                               [example] * 2, tokens_NxC=tokens, mask_NxC=mask)
  assert not valid.any() and [f.row for f in failures] == [0, 1] and "shape (3,)" in failures[0].error
  # Without token arrays a token reward cannot run: its rows fail, the call does not raise.
  _, valid, failures = rewards.score_rewards([nan_on_5], ["p"], ["a"], [example])
  assert not valid.any() and "tokens_NxC" in failures[0].error
