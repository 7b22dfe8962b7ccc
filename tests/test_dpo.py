"""Contrastive rationale distillation (trainer "dpo"): DPO's loss and gradient against numpy, the "dpo" term against
a direct forward pass of the model, which negative pairs with which demonstration, the "wrong" teach filter, a
runlocal run from an SFT checkpoint (the margin rises; stopped and resumed, its losses are the uninterrupted
run's), and bad negatives files."""

import dataclasses
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, tasks, train
from rr.config import ConfigError, base_config, load_config
from rr.data import CharTokenizer, DataError, format_completion, format_prompt
from rr.data.inputs import load_inputs
from rr.data.pairs import Pair, PairBatches, make_pairs
from rr.eval.scoring import score
from rr.losses import completion_log_probs, dpo_loss
from rr.train import dpo, teach
from rr.train.batch import sft_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Parts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDITION = tasks.get_task("addition")


def _np_log_sigmoid(x):
  return -np.log1p(np.exp(-x))


def _write_records(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in records))
  return path


def _wrong(example, rationale=None, answer=None):
  """A record a student could write: the question, a rationale (by default the chain without its last step) and
  a wrong answer (by default one more than the sum)."""
  if rationale is None:
    rationale = "\n".join(example.rationale.split("\n")[:-1])
  return {"question": example.question, "rationale": rationale,
          "answer": str(int(example.answer) + 1) if answer is None else answer}


# ------------------------------------------------------------------------------------------ the loss

@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_value_gradient_and_metrics_against_numpy(beta):
  pc = np.array([-3.0, -10.0, -4.5], np.float32)  # policy log-probs of the chosen completions
  pr = np.array([-5.0, -2.0, -4.5], np.float32)
  rc = np.array([-4.0, -9.0, -6.0], np.float32)  # the reference's
  rr_ = np.array([-4.0, -3.0, -4.0], np.float32)
  margin = beta * ((pc - rc) - (pr - rr_))  # by hand: (1 - -1), (-1 - 1), (1.5 - -0.5)
  np.testing.assert_allclose(margin, beta * np.array([2.0, -2.0, 2.0]), rtol=1e-6)
  want = np.mean(-_np_log_sigmoid(margin))
  loss, metrics = dpo_loss(*map(jnp.asarray, (pc, pr, rc, rr_)), beta)
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  # d loss / d pc_i = -beta * sigmoid(-margin_i) / P; d / d pr_i = +beta * sigmoid(-margin_i) / P; refs: none
  weight = beta / (1.0 + np.exp(margin)) / len(pc)
  grads = jax.grad(lambda *a: dpo_loss(*a, beta)[0], argnums=(0, 1, 2, 3))(*map(jnp.asarray, (pc, pr, rc, rr_)))
  np.testing.assert_allclose(grads[0], -weight, rtol=1e-5)
  np.testing.assert_allclose(grads[1], weight, rtol=1e-5)
  assert not np.any(grads[2]) and not np.any(grads[3])
  assert float(metrics["rewards/chosen"]) == pytest.approx(beta * np.mean(pc - rc), rel=1e-6)
  assert float(metrics["rewards/rejected"]) == pytest.approx(beta * np.mean(pr - rr_), rel=1e-6)
  assert float(metrics["rewards/margins"]) == pytest.approx(beta * 2.0 / 3.0, rel=1e-5)
  assert float(metrics["rewards/accuracies"]) == pytest.approx(2.0 / 3.0)  # pairs 0 and 2 ordered right
  assert float(metrics["logps/chosen"]) == pytest.approx(np.mean(pc))
  assert float(metrics["logps/rejected"]) == pytest.approx(np.mean(pr))


def test_a_zero_margin_costs_log_2_and_masked_positions_never_reach_the_sums():
  same = jnp.array([-7.0, -1.0])
  loss, metrics = dpo_loss(same, same + 2.0, same, same + 2.0, 0.3)  # policy == reference
  assert float(loss) == pytest.approx(math.log(2.0), rel=1e-6) and float(metrics["rewards/accuracies"]) == 0.0
  logp = jnp.array([[-1.0, -jnp.inf, -2.0], [jnp.nan, -0.5, -0.25]])
  mask = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
  np.testing.assert_allclose(completion_log_probs(logp, mask), [-3.0, -0.75])
  grad = jax.grad(lambda x: completion_log_probs(x, mask).sum())(logp)
  assert np.all(np.isfinite(grad)) and np.array_equal(grad, mask)


# ------------------------------------------------------------------------------------------ the term

def _pair_setup():
  tokenizer = CharTokenizer()
  examples = tasks.make_split(ADDITION, "train", 3, 3, 0)
  negatives = [_wrong(examples[0]), _wrong(examples[1], rationale="", answer="0"), _wrong(examples[2], answer="7")]
  pairs = [dpo_pair(e, n) for e, n in zip(examples, negatives)]
  batches = PairBatches(pairs, tokenizer, batch_size=6, max_len=48, seed=0)
  cfg = models.model_config("nano", vocab_size=tokenizer.vocab_size, num_layers=1)
  init = jax.jit(models.init_params, static_argnums=0)
  return tokenizer, batches, models.Decoder(cfg), init(cfg, jax.random.key(1)), init(cfg, jax.random.key(2))


def dpo_pair(example, record):
  return Pair(example, dataclasses.replace(example, rationale=record["rationale"], answer=record["answer"]), 0)


WIDTH = 48  # every direct forward runs at one width (one compile): a causal model's logits at a column never read
#            the columns after it, so the filler after a row's end changes none of its own


@jax.jit
def _logits(params, ids):
  cfg = models.model_config("nano", vocab_size=CharTokenizer().vocab_size, num_layers=1)
  return models.Decoder(cfg).apply({"params": params}, ids, jnp.arange(WIDTH)[None, :])[0]


def _direct_completion_logps(params, tokenizer, example):
  """[completion tokens] log p of each token of example's completion + eos, from the model run on prompt +
  completion (then filler): logits at column len(prompt) - 1 + j predict completion token j."""
  prompt = tokenizer.encode(format_prompt(example.question, tokenizer))
  completion = tokenizer.encode(format_completion(example)) + [tokenizer.eos_id]
  ids = np.full((1, WIDTH), 7, np.int32)
  ids[0, :len(prompt) + len(completion)] = prompt + completion
  logits = np.asarray(_logits(params, ids), np.float64)[0]
  logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  return np.array([logits[len(prompt) - 1 + j, t] - logz[len(prompt) - 1 + j] for j, t in enumerate(completion)])


def test_the_dpo_term_equals_the_loss_of_a_direct_forward_and_micro_batches_add_up_to_it():
  tokenizer, batches, model, params, ref_params = _pair_setup()
  config = base_config()
  nll_weight = 0.7
  config.dpo.beta, config.dpo.nll_weight = 0.5, nll_weight
  batch = sft_batch(batches.batch(0))
  order = batches.pair_indices(0)
  chosen = [_direct_completion_logps(params, tokenizer, batches.pairs[i].chosen) for i in order]
  rejected = [_direct_completion_logps(params, tokenizer, batches.pairs[i].rejected) for i in order]
  ref_c = [_direct_completion_logps(ref_params, tokenizer, batches.pairs[i].chosen).sum() for i in order]
  ref_r = [_direct_completion_logps(ref_params, tokenizer, batches.pairs[i].rejected).sum() for i in order]
  margin = 0.5 * ((np.array([c.sum() for c in chosen]) - ref_c) - (np.array([r.sum() for r in rejected]) - ref_r))
  nll = -np.concatenate(chosen).sum() / sum(len(c) for c in chosen)
  preference = np.mean(-_np_log_sigmoid(margin))
  objective = dpo.make_dpo_objective(config, Parts(model, {"reference": model}, vocab_size=tokenizer.vocab_size),
                                     ["dpo"])
  frozen = {"reference": ref_params}
  grads_of = jax.jit(jax.value_and_grad(objective, has_aux=True))
  (loss, metrics), grads = grads_of(params, batch, frozen, jax.random.key(0))
  assert float(loss) == pytest.approx(preference + nll_weight * nll, rel=2e-5)
  assert float(metrics["dpo_loss"]) == pytest.approx(preference, rel=2e-5)
  assert float(metrics["rewards/margins"]) == pytest.approx(margin.mean(), rel=1e-4, abs=1e-6)
  assert float(metrics["chosen_nll"]) == pytest.approx(nll, rel=2e-5)
  assert float(metrics["chosen_tokens"]) == sum(len(c) for c in chosen)
  # three micro-batches of one pair each, dividing by the whole batch's counts, add up to the whole batch
  totals = objective.totals(batch)
  parts = [jax.tree.map(lambda x: x[2 * m:2 * m + 2], batch) for m in range(3)]
  split = [grads_of(params, p, frozen, jax.random.key(0), totals) for p in parts]
  assert sum(float(s[0][0]) for s in split) == pytest.approx(float(loss), rel=1e-5)
  summed = jax.tree.map(lambda *g: sum(g), *[s[1] for s in split])
  for a, b in zip(jax.tree.leaves(summed), jax.tree.leaves(grads)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ pairs and batches

def test_negatives_pair_with_their_questions_demonstrations_in_turn(tmp_path):
  split = tasks.make_split(ADDITION, "train", 4, 3, 0)
  a, b, c, d = split
  other = dataclasses.replace(a, rationale="another teacher's chain")
  train = [a, other, b, c, d]  # two demonstrations of a (data.rationales_path), c and d without negatives
  path = _write_records(str(tmp_path / "neg" / "data.jsonl"), [
      _wrong(a), _wrong(b), _wrong(a, answer="1"), _wrong(a, rationale="repeat repeat repeat"),
      {**_wrong(b), "answer": " " + b.answer + " "},  # the right answer, padded: no negative, dropped
      _wrong(c, rationale="<think>unclosed", answer=""),  # an empty answer is wrong too
  ])
  out = make_pairs(train, str(tmp_path / "neg"))  # a teach workdir: its data.jsonl
  assert out.path == path
  assert [(p.line, p.chosen.rationale, p.rejected.answer) for p in out.pairs] == [
      (1, a.rationale, str(int(a.answer) + 1)), (2, b.rationale, str(int(b.answer) + 1)),
      (3, "another teacher's chain", "1"), (4, a.rationale, str(int(a.answer) + 1)),
      (6, c.rationale, "")]
  assert all(p.rejected.question == p.chosen.question and p.rejected.meta == p.chosen.meta for p in out.pairs)
  assert out.pairs[3].rejected.rationale == "repeat repeat repeat"
  assert out.counts == {"pairs": 5, "questions": 4, "questions_paired": 3, "questions_without_negative": 1,
                        "negatives": 6, "negatives_right": 1, "negatives_without_demonstration": 0}
  # with a teacher's records (train) that left question d out, d's negative pairs with nothing and is counted
  _write_records(path, [_wrong(d), _wrong(a)])
  out = make_pairs([a, b], path, split=split)
  assert len(out.pairs) == 1 and out.counts["negatives_without_demonstration"] == 1


def test_pair_batches_put_chosen_and_rejected_after_one_prompt_as_a_function_of_the_step():
  tokenizer = CharTokenizer()
  examples = tasks.make_split(ADDITION, "train", 5, 3, 0)
  pairs = [dpo_pair(e, _wrong(e)) for e in examples]
  batches = PairBatches(pairs, tokenizer, batch_size=4, max_len=80, seed=3)
  again = PairBatches(pairs, tokenizer, batch_size=4, max_len=80, seed=3)
  for step in (0, 1, 2, 7):
    assert all(np.array_equal(batches.batch(step)[k], again.batch(step)[k]) for k in ("tokens", "loss_mask"))
  # an epoch is a permutation: steps 0, 1 and half of 2 take every pair once
  seen = np.concatenate([batches.pair_indices(s) for s in range(3)])[:5]
  assert sorted(seen) == list(range(5))
  arrays = batches.batch(1)
  for row, i in enumerate(np.repeat(batches.pair_indices(1), 2)):
    example = pairs[i].chosen if row % 2 == 0 else pairs[i].rejected
    prompt = tokenizer.encode(format_prompt(example.question, tokenizer))
    completion = tokenizer.encode(format_completion(example)) + [tokenizer.eos_id]
    n = len(prompt) + len(completion)
    assert arrays["tokens"][row, :n].tolist() == prompt + completion
    mask = np.zeros(arrays["tokens"].shape[1], np.float32)
    mask[len(prompt) - 1:n - 1] = 1.0  # the targets tokens[t + 1] that are completion tokens, eos included
    assert np.array_equal(arrays["loss_mask"][row], mask)
  assert arrays["tokens"].shape[1] == 64  # the bucket of its longest row (41 tokens), not max_len


def test_the_wrong_filter_keeps_exactly_the_finished_parsed_wrong_samples():
  example = tasks.make_split(ADDITION, "train", 1, 3, 0)[0]
  chain = f"<think>{example.rationale}</think>"
  texts = [(chain + example.answer, True),  # right
           (chain + str(int(example.answer) + 1), True),  # wrong: kept
           (chain + str(int(example.answer) + 2), False),  # wrong, but cut at max_new_tokens
           ("<think>" + example.rationale, True),  # never closed its thinking: unparsed
           (chain + "   ", True),  # no answer: unparsed
           (chain + "1</think>" + str(int(example.answer) - 1), True)]  # two answers: the last one counts, wrong
  samples = [teach.Sample(index=i, text=t, tokens=len(t) + 1, finished=f, scored=score(example, t, len(t) + 1),
                          rationale="", answer="") for i, (t, f) in enumerate(texts)]
  kept, rejected = teach.select(samples, ["wrong"], base_config().teach)
  assert [s.index for s in kept] == [1, 5]
  assert dict(rejected) == {"unfinished": 1, "unparsed": 2, "wrong": 1}


# ------------------------------------------------------------------------------------------ a run, and bad input

def _dpo_config(sft_workdir, negatives, **overrides):
  arg = f":runlocal,init={sft_workdir},negatives={negatives}"
  return load_config(os.path.join(ROOT, "configs", "dpo.py") + arg, [("eval.num_examples", "0"), *overrides.items()])


def test_a_runlocal_run_widens_the_margin_and_resumes_exactly(sft_workdir, tmp_path):
  probe = _dpo_config(sft_workdir, str(tmp_path))
  split = load_inputs(probe).train
  records = [_wrong(e) for e in split[:8]] + [_wrong(split[0], rationale="0+0+0=00", answer="0")]
  negatives = _write_records(str(tmp_path / "negatives" / "data.jsonl"), records)
  config = _dpo_config(sft_workdir, negatives)
  whole = train.run(config, str(tmp_path / "whole"))
  assert whole["finished"] and whole["step"] == 6
  assert whole["total/pairs"] == 9 and whole["total/questions_without_negative"] == len(split) - 8
  rows = [r for r in read_metrics(str(tmp_path / "whole" / "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in rows] == list(range(1, 7))
  # step 1 is scored with the starting params, which are the reference: margin 0, DPO loss log 2
  assert abs(rows[0]["train/rewards/margins"]) < 1e-5 and rows[0]["train/dpo_loss"] == pytest.approx(math.log(2))
  assert rows[-1]["train/rewards/margins"] > 0.05 and rows[-1]["train/rewards/accuracies"] >= 0.75
  assert rows[-1]["train/rewards/margins"] == pytest.approx(
      rows[-1]["train/rewards/chosen"] - rows[-1]["train/rewards/rejected"], abs=1e-5)
  # stopped after step 3 and started again: the same batches, and the reference is still the starting params
  stopped = train.run(config, str(tmp_path / "resumed"), should_stop=lambda step: step == 3)
  assert stopped["step"] == 3 and not stopped["finished"]
  resumed = train.run(config, str(tmp_path / "resumed"))
  assert resumed["finished"] and resumed["step"] == 6
  again = [r for r in read_metrics(str(tmp_path / "resumed" / "metrics.jsonl")) if "train/loss" in r]
  assert [r["step"] for r in again] == list(range(1, 7))
  np.testing.assert_allclose([r["train/loss"] for r in again], [r["train/loss"] for r in rows], rtol=1e-5)
  np.testing.assert_allclose([r["train/rewards/margins"] for r in again], [r["train/rewards/margins"] for r in rows],
                             rtol=1e-4, atol=1e-6)


def test_bad_negatives_stop_the_run_before_any_work(tmp_path):
  sft = str(tmp_path / "sft")  # never read: each error comes first
  workdir = str(tmp_path / "run")
  config = _dpo_config(sft, "unset", **{"dpo.negatives": ""})
  with pytest.raises(ConfigError, match=r"config.dpo.negatives.*teach.filters=wrong"):
    train.run(config, workdir)
  with pytest.raises(DataError, match=r"config.dpo.negatives='.*/missing' does not exist"):
    train.run(_dpo_config(sft, str(tmp_path / "missing")), workdir)
  split = load_inputs(config).train
  empty = _write_records(str(tmp_path / "empty.jsonl"), [])
  with pytest.raises(DataError, match=r"empty.jsonl \(config.dpo.negatives\) holds no records"):
    train.run(_dpo_config(sft, empty), workdir)
  right = _write_records(str(tmp_path / "right.jsonl"),
                         [{"question": e.question, "rationale": e.rationale, "answer": e.answer} for e in split[:3]])
  with pytest.raises(DataError, match=r"right.jsonl \(config.dpo.negatives\) holds no wrong sample.*3 have an answer"):
    train.run(_dpo_config(sft, right), workdir)
  other = tasks.make_split(tasks.get_task("countdown"), "train", 2, 4, 0)
  mixed = _write_records(str(tmp_path / "other.jsonl"), [_wrong(split[0]), _wrong(other[0], answer="1")])
  with pytest.raises(DataError, match=r"other.jsonl, line 2: question .* is not in this run's train split"):
    train.run(_dpo_config(sft, mixed), workdir)
  with pytest.raises(ConfigError, match=r"config.dpo.beta=0.0 must be > 0"):
    train.run(_dpo_config(sft, mixed, **{"dpo.beta": "0"}), workdir)
  with pytest.raises(ConfigError, match=r"batch_size=7 must be even"):
    train.run(_dpo_config(sft, mixed, **{"train.batch_size": "7"}), workdir)
  assert not os.path.exists(workdir)  # nothing was written


def test_a_job_of_stages_checks_its_dpo_stage_before_the_first_stage_runs(tmp_path):
  """configs/dpo.py samples the negatives in a stage, so the dpo stage's file checks wait for it, but its settings
  (an odd batch, beta 0) stop the job before the sft stage trains."""
  config = load_config(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                                    "dpo.py:runlocal"))
  config.stage.dpo.dpo = {"beta": 0.0}
  workdir = str(tmp_path / "job")
  with pytest.raises(ConfigError, match=r"config.stage.dpo: config.dpo.beta=0.0 must be > 0"):
    train.run(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "sft"))
