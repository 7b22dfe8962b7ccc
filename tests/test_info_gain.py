"""RLP's info_gain reward: the gain against a direct forward written here, the rows a policy could try (unclosed,
empty, copied, several closes, padding), the policy EMA by hand and across a resume, and the plain-text corpus."""

import json
import math
import os

import jax
import numpy as np
import optax
import pytest

from rr import models, sharding, train
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, apply_overrides, base_config, load_config, validate
from rr.data import CharTokenizer, DataError, format_prompt
from rr.data.inputs import load_inputs
from rr.data.text_corpus import Document, cut_points, task_document, text_examples
from rr.rewards import RolloutView, build_reward, rloo_advantages, score_rewards
from rr.rewards.info_gain import reading_baseline
from rr.tasks import Example, make_split
from rr.train.metrics import read_metrics
from rr.train.rl_config import build_rewards
from rr.train.state import POLICY_EMA, init_train_state, make_ema_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK = CharTokenizer()
K = 3  # rl.info_gain_tokens of the unit tests
# Smaller than the nano preset, so the unit tests compile in a blink
CFG = models.ModelConfig(vocab_size=TOK.vocab_size, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                         num_kv_heads=1)


# ------------------------------------------------------------------------------------------ by hand


def direct_logp(params, context, continuation):
  """log p(continuation_j | context, continuation_<j) from one plain forward (positions 0.., right-padded to 48 tokens
  so it compiles once: a causal model's earlier logits never see the padding), log-softmax in float64 numpy."""
  seq = list(context) + list(continuation)
  logits = np.asarray(models.forward(CFG, params, np.array([seq + [0] * (48 - len(seq))], np.int32))[0], np.float64)
  top = logits.max(-1, keepdims=True)
  logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
  return np.array([logp[len(context) - 1 + j, continuation[j]] for j in range(len(continuation))])


def hand_gain(theta, ema, example, thought_text):
  """Mean over the k continuation tokens of log p_theta(prompt + thought + x) - log p_ema(prefix + x); thought_text
  None is an unclosed thought: log p_theta = -log V."""
  x = TOK.encode(example.answer)[:K]
  base = direct_logp(ema, TOK.encode(example.question), x)
  if thought_text is None:
    return float(np.mean(-math.log(CFG.vocab_size) - base))
  context = TOK.encode(format_prompt(example.question)) + TOK.encode(thought_text)
  return float(np.mean(direct_logp(theta, context, x) - base))


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def params():
  return models.init_params(CFG, jax.random.key(0)), models.init_params(CFG, jax.random.key(1))


def make_reward(rows=8, group=4, tokens=K):
  rl = base_config().rl
  rl.info_gain_tokens, rl.prompts_per_step, rl.group_size = tokens, rows // group, group
  reward = build_reward("info_gain", rl, TOK)
  reward.bind(None, TOK.vocab_size)
  reward.use_model(CFG)
  return reward


def view_of(theta, examples, completions, width=24, garbage_after_end=None):
  """A RolloutView of completions (text; "<eos>" marks the end) of each example, as the collector lays it out."""
  tokens = np.full((len(completions), width), TOK.pad_id, np.int32)
  lengths = np.zeros(len(completions), np.int32)
  for i, text in enumerate(completions):
    ids = TOK.encode(text.replace("<eos>", "")) + ([TOK.eos_id] if text.endswith("<eos>") else [])
    tokens[i, :len(ids)] = ids
    lengths[i] = len(ids)
    if garbage_after_end is not None:  # what lies past the mask must not count
      tokens[i, len(ids):] = np.resize(garbage_after_end, width - len(ids))
  mask = np.arange(width)[None, :] < lengths[:, None]
  prompts = [TOK.encode(format_prompt(e.question)) for e in examples]
  return RolloutView([format_prompt(e.question) for e in examples], [t.replace("<eos>", "") for t in completions],
                     examples, prompts, tokens, mask, np.zeros(tokens.shape, np.float32), theta)


A = Example(question="12+34\n1+3", rationale="", answer="=46\nx")  # a prefix and its next tokens
B = Example(question="9+9", rationale="", answer="=18")
# (example, completion as sampled, the thought the reward should read: None = unclosed)
ROWS = [
    (A, "<think>2+4=6</think>46<eos>", "<think>2+4=6</think>"),  # a thought, then the model's own guess
    (A, "<think></think><eos>", "<think></think>"),  # empty thought
    (A, "<think>=46</think><eos>", "<think>=46</think>"),  # copies the continuation: allowed, RLP pays it
    (A, "<think>a</think>b</think>c<eos>", "<think>a</think>"),  # several closes: the first ends the thought
    (B, "<think>9+9 is eighteen, carry", None),  # cut off at max_new_tokens
    (B, "<think>18<eos>", None),  # eos before </think>
    (B, "18</think>=18<eos>", "18</think>"),  # no "<think>": the tokens before the close are the thought
    (B, "<think>x</think>", "<think>x</think>"),  # closed, then cut off: the reward reads only the thought
]


# ------------------------------------------------------------------------------------------ the reward


def test_gain_matches_a_direct_forward_for_every_kind_of_row(params):
  theta, ema = params
  reward = make_reward()
  examples = [e for e, _, _ in ROWS]
  view = view_of(theta, examples, [c for _, c, _ in ROWS])
  with reading_baseline(reward, ema):
    got = reward.score(view)
  want = [hand_gain(theta, ema, e, thought) for e, _, thought in ROWS]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert reward.baseline_params is None  # let go after the round: the next update donates the state
  metrics = reward.metrics()
  assert metrics["closed_frac"] == pytest.approx(6 / 8)
  base = np.concatenate([direct_logp(ema, TOK.encode(e.question), TOK.encode(e.answer)[:K]) for e in examples])
  assert metrics["ema_logp"] == pytest.approx(base.mean(), abs=1e-4)
  assert got[4] == got[5]  # both unclosed thoughts of one prompt earn its uniform floor


def test_padding_and_width_do_not_change_the_reward(params):
  theta, ema = params
  reward = make_reward()
  examples = [e for e, _, _ in ROWS]
  completions = [c for _, c, _ in ROWS]
  with reading_baseline(reward, ema):
    plain = reward.score(view_of(theta, examples, completions))
    garbage = TOK.encode("</think>=46\nx=18")  # a close and the continuations, past each row's end
    padded = reward.score(view_of(theta, examples, completions, width=40, garbage_after_end=garbage))
  np.testing.assert_allclose(padded, plain, rtol=1e-5, atol=1e-5)


def test_each_forward_compiles_once_across_rounds(params):
  theta, ema = params
  reward = make_reward()
  completions = [c for _, c, _ in ROWS]
  with reading_baseline(reward, ema):
    reward.score(view_of(theta, [e for e, _, _ in ROWS], completions))
    shorter = Example(question="1", rationale="", answer="+1=2")
    reward.score(view_of(theta, [shorter] * 4 + [B] * 4, completions))
  assert reward._forward._cache_size() == 2  # the thought rows and the no-thought rows, one shape each


def test_rloo_on_the_gains_is_rlps_advantage():
  r = np.array([0.3, -1.2, 0.5, 2.0, 1.0, 1.0, -0.5, 0.0], np.float32)
  got = np.asarray(rloo_advantages(r, 4))
  want = np.concatenate([4 / 3 * (g - g.mean()) for g in r.reshape(2, 4)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_without_its_baseline_or_with_a_prompt_that_holds_the_answer_every_row_fails(params):
  theta, ema = params
  reward = make_reward()
  examples = [e for e, _, _ in ROWS]
  view = view_of(theta, examples, [c for _, c, _ in ROWS])
  _, valid, failures = score_rewards([reward], view.prompts, view.completions, examples, view=view)
  assert not valid.any() and "EMA baseline" in failures[0].error
  leaked = RolloutView(view.prompts, view.completions, examples,
                       [TOK.encode(e.answer + "\n" + format_prompt(e.question)) for e in examples], view.tokens_NxC,
                       view.mask_NxC, view.logprobs_NxC, theta)
  with reading_baseline(reward, ema):
    _, valid, failures = score_rewards([reward], view.prompts, view.completions, examples, view=leaked)
  assert not valid.any() and "prompt_context" in failures[0].error
  empty = Example(question="ab", rationale="", answer="")  # nothing to predict: that row alone is invalid
  with reading_baseline(reward, ema):
    _, valid, _ = score_rewards([reward], view.prompts, view.completions, [empty] + examples[1:],
                                view=view_of(theta, [empty] + examples[1:], view.completions))
  assert list(valid) == [False] + [True] * 7


@pytest.mark.parametrize("key,value,message", [("info_gain_tokens", 0, "rl.info_gain_tokens=0"),
                                               ("info_gain_ema", 1.5, "rl.info_gain_ema=1.5")])
def test_bad_reward_settings_are_config_errors(key, value, message):
  rl = base_config().rl
  rl.rewards, rl.reward_weights = "info_gain", "1"
  rl[key] = value
  with pytest.raises(ConfigError, match=message):
    build_rewards(rl, TOK)


def test_heldout_measures_a_greedy_thought_against_the_policy_without_it(params):
  theta, _ = params
  reward = make_reward()
  examples = [A, B]
  thoughts = ["<think>2+4=6</think>46<eos>", "<think>18"]  # one closed, one cut off

  class Scripted:  # the sampler's interface, sampling the thoughts above
    def __call__(self, params, prompts, *, max_new_tokens, strategy):
      view = view_of(theta, examples, thoughts, width=max_new_tokens)
      self.tokens, self.lengths = view.tokens_NxC, view.mask_NxC.sum(1)
      return self

  got = reward.heldout(Scripted(), theta, examples, strategy=None, max_new_tokens=24)
  x = [TOK.encode(e.answer)[:K] for e in examples]
  plain = [direct_logp(theta, TOK.encode(e.question), xi) for e, xi in zip(examples, x)]
  empty = [direct_logp(theta, TOK.encode(format_prompt(e.question) + "<think></think>"), xi)
           for e, xi in zip(examples, x)]
  with_thought = direct_logp(theta, TOK.encode(format_prompt(A.question) + "<think>2+4=6</think>"), x[0])
  floor = -math.log(CFG.vocab_size)
  assert got["eval/info_gain"] == pytest.approx(np.mean([np.mean(with_thought - plain[0]),
                                                         np.mean(floor - plain[1])]), abs=1e-4)
  assert got["eval/info_gain_over_empty"] == pytest.approx(np.mean([np.mean(with_thought - empty[0]),
                                                                    np.mean(floor - empty[1])]), abs=1e-4)
  assert got["eval/nll_no_thought"] == pytest.approx(-np.concatenate(plain).mean(), abs=1e-4)
  assert got["eval/nll_empty_thought"] == pytest.approx(-np.concatenate(empty).mean(), abs=1e-4)
  assert got["eval/nll_thought"] == pytest.approx(-with_thought.mean(), abs=1e-4)
  assert got["eval/thought_closed_frac"] == 0.5


# ------------------------------------------------------------------------------------------ the policy EMA


def test_ema_step_by_hand_over_two_updates():
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(CFG, optax.sgd(0.1), mesh, seed=0, ema=True)
  p0 = jax.device_get(state["params"])
  np.testing.assert_array_equal(jax.tree.leaves(jax.device_get(state[POLICY_EMA]))[0], jax.tree.leaves(p0)[0])
  step = make_ema_step(0.9, shardings)
  p1 = jax.tree.map(lambda x: x + 1.0, p0)
  p2 = jax.tree.map(lambda x: 2.0 * x - 3.0, p0)
  state = step({**state, "params": jax.device_put(p1, shardings["params"])})
  state = step({**state, "params": jax.device_put(p2, shardings["params"])})
  got = jax.device_get(state[POLICY_EMA])
  for e, a, b, c in zip(*(jax.tree.leaves(t) for t in (got, p0, p1, p2))):
    np.testing.assert_allclose(e, 0.9 * (0.9 * a + 0.1 * b) + 0.1 * c, rtol=1e-5, atol=1e-6)


def rlp_config(sft_workdir, *overrides):
  """configs/info_gain.py:runlocal's rlp stage as a plain grpo run from the shared SFT checkpoint, two steps with a
  checkpoint after each, tau = 0.5 so the EMA moves visibly, and a large learning rate so the params do."""
  config = load_config(os.path.join(ROOT, "configs", "info_gain.py") + ":runlocal")
  stage = config.stage.rlp
  config.trainer = "grpo"
  config.stages = ""
  config.stage = base_config().stage
  apply_overrides(config, [("data.format", stage.data.format), ("optim.lr", "0.01"), ("optim.warmup_steps", "1"),
                           ("init_checkpoint", sft_workdir), ("train.steps", "2"), ("train.eval_every", "0"),
                           ("train.checkpoint_every", "1"), ("train.log_every", "1"), ("eval.num_examples", "2"),
                           ("rl.info_gain_ema", "0.5"), ("rl.max_new_tokens", "24"), *overrides])
  validate(config)
  return config


def test_rlp_run_resumes_with_the_same_losses_and_ema(sft_workdir, tmp_path):
  whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
  summary = train.run(rlp_config(sft_workdir), whole)
  assert summary["finished"] and "eval/info_gain" in summary and "eval/nll_no_thought" in summary
  quiet = ("eval.num_examples", "0")  # evaluation samples apart from training: the resumed run skips it
  assert train.run(rlp_config(sft_workdir, quiet), split, should_stop=lambda step: step == 1)["finished"] is False
  train.run(rlp_config(sft_workdir, quiet), split)
  losses = [{r["step"]: r["train/loss"] for r in read_metrics(os.path.join(w, "metrics.jsonl")) if "train/loss" in r}
            for w in (whole, split)]
  assert sorted(losses[0]) == sorted(losses[1]) == [1, 2]
  np.testing.assert_allclose([losses[1][s] for s in (1, 2)], [losses[0][s] for s in (1, 2)], rtol=1e-5, atol=1e-7)
  rows = [r for r in read_metrics(os.path.join(whole, "metrics.jsonl")) if "train/loss" in r]
  assert all(r["train/grad_norm"] > 0 and "train/rewards/info_gain/closed_frac" in r for r in rows)
  states = {w: Checkpoints(os.path.join(w, "checkpoints"), read_only=True) for w in (whole, split)}
  start = Checkpoints(os.path.join(sft_workdir, "checkpoints"), read_only=True)
  p0 = start.read_params(start.latest_step())
  s1, s2 = states[whole].read_state(1), states[whole].read_state(2)
  for e2, e2_split, e1, p1, p2, first in zip(*(jax.tree.leaves(t) for t in (
      s2[POLICY_EMA], states[split].read_state(2)[POLICY_EMA], s1[POLICY_EMA], s1["params"], s2["params"], p0))):
    np.testing.assert_allclose(e1, 0.5 * first + 0.5 * p1, rtol=1e-5, atol=1e-6)  # tau = 0.5 from the SFT start
    np.testing.assert_allclose(e2, 0.5 * e1 + 0.5 * p2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e2_split, e2, rtol=1e-6, atol=1e-7)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(s2[POLICY_EMA]), jax.tree.leaves(s2["params"])))


# ------------------------------------------------------------------------------------------ the text corpus


def test_cut_points_never_fall_in_the_last_k_tokens():
  seen = set()
  for seed in range(200):
    cuts = cut_points(11, 3, np.random.default_rng(seed))
    assert len(cuts) == 3 and len(set(cuts)) == 3 and list(cuts) == sorted(cuts)  # ceil((11 - 3) / 3)
    seen |= set(int(c) for c in cuts)
  assert seen == set(range(1, 9))  # 1..L - k, each reachable
  assert list(cut_points(4, 3, np.random.default_rng(0))) == [1]  # one token to read, three to predict


def test_documents_cut_into_prefixes_and_next_tokens_by_hand():
  docs = [Document("abcd", "doc 0"), Document("abcdefghij", "doc 1")]
  got = text_examples(docs, TOK, tokens=3, window=4, seed=7, split="train")
  assert got[0] == Example(question="a", rationale="", answer="bcd")
  rest = got[1:]
  assert len(rest) == 3  # ceil((10 - 3) / 3)
  for e in rest:
    cut = "abcdefghij".index(e.answer)
    assert e.answer == "abcdefghij"[cut:cut + 3] and e.question == "abcdefghij"[max(0, cut - 4):cut]
    assert 1 <= cut <= 7 and e.rationale == "" and e.task == ""
  assert text_examples(docs, TOK, 3, 4, seed=7, split="train") == got  # seeded


def text_config(**data):
  config = base_config()
  config.data.format = "text"
  for key, value in data.items():
    config.data[key] = value
  config.rl.info_gain_tokens = 4
  config.eval.num_examples = 2
  validate(config)
  return config


def test_task_documents_are_the_splits_examples_written_out():
  config = text_config(train_size=5, test_size=3, max_len=20)
  inputs = load_inputs(config)
  sources = make_split("addition", "train", 5, 3, 0)  # the task's own train split (config.seed 0)
  doc = task_document(sources[0])
  assert doc == f"{sources[0].question}\n{sources[0].rationale}\n{sources[0].answer}"
  counts = [-(-(len(task_document(e)) - 4) // 4) for e in sources]  # ceil((L - k) / k) cuts each
  assert len(inputs.train) == sum(counts)
  for e in inputs.train[:counts[0]]:  # the first document's cuts: up to 19 tokens before the cut, then 4
    assert any(doc[c:c + 4] == e.answer and doc[max(0, c - 19):c] == e.question for c in range(1, len(doc) - 3))
  assert inputs.test and all(len(e.answer) == 4 for e in inputs.test)
  assert all(len(TOK.encode(format_prompt(e.question))) <= 20 for e in inputs.train)  # the prefix window
  with pytest.raises(ConfigError, match="data.format='gsm8k' applies to file"):
    config.data.format = "gsm8k"
    validate(config)


def test_a_jsonl_of_text_records_reads_back(tmp_path):
  path = tmp_path / "docs.jsonl"
  texts = ["the cat sat on the mat", "hello world!"]
  path.write_text(json.dumps({"text": texts[0], "id": 1}) + "\n\n" + json.dumps({"text": texts[1]}) + "\n")
  inputs = load_inputs(text_config(source="jsonl", train_path=str(path)))
  assert len(inputs.train) == sum(-(-(len(t) - 4) // 4) for t in texts) and inputs.test == []
  for e in inputs.train:
    assert len(e.answer) == 4 and any(e.question + e.answer in t for t in texts)


@pytest.mark.parametrize("lines,message", [
    ([{"text": "a fine document"}, {"body": "no text"}], r"docs.jsonl, line 2: missing field 'text'"),
    ([{"text": 3}], r"line 1: field 'text' must be a string"),
    ([{"text": "a fine document"}, {"text": "abc"}], r"line 2: the document is 3 tokens long.*rl.info_gain_tokens"),
    ([], r"is empty"),
])
def test_bad_text_files_give_one_clear_error(tmp_path, lines, message):
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in lines))
  with pytest.raises(DataError, match=message):
    load_inputs(text_config(source="jsonl", train_path=str(path)))


def test_text_refuses_tfds_and_a_prompt_that_shows_the_continuation():
  with pytest.raises(ConfigError, match="reads data.source 'task', 'jsonl' or 'parquet'"):
    load_inputs(text_config(source="tfds", tfds_name="x", tfds_dir="/nonexistent"))
  with pytest.raises(ConfigError, match="prompt_context='answer' with data.format='text'"):
    load_inputs(text_config(prompt_context="answer"))
