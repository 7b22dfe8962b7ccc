"""SFT steps between RL steps (rr.train.sft_steps): ReLIFT's buffer and SFT step, SASR's switching, a resumed run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, sharding, train
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, apply_overrides, base_config, load_config
from rr.data import CharTokenizer
from rr.tasks import Example
from rr.train.collector import Rollouts
from rr.train.groups import Groups
from rr.train.metrics import read_metrics
from rr.train.optimizer import make_optimizer
from rr.train.sft_steps import SASR, ReLIFT, make_sft_steps, sasr_draws, sft_probability
from rr.train.state import init_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = [Example(f"{a}+{b}", f"{a}+{b}={a + b}", str(a + b)) for a, b in ((1, 2), (3, 4), (5, 6), (7, 1), (2, 2))]
COEF = 0.5  # large enough that the entropy part of ReLIFT's loss shows in the hand check


def sft_steps_config(kind: str, **rl):
  config = base_config()
  config.rl.sft_steps, config.rl.rewards, config.rl.relift_entropy_coef = kind, "correctness", COEF
  config.optim.warmup_steps = 0
  for key, value in rl.items():
    config.rl[key] = value
  return config


@pytest.fixture(scope="module")
def tiny():
  """A nano model, its optimiser, mesh and a fresh-state factory, shared by every compiled test here."""
  tokenizer = CharTokenizer()
  model_cfg = models.model_config("nano", vocab_size=tokenizer.vocab_size)
  config = base_config()
  optimizer = make_optimizer(config.optim, 10, model_cfg.param_dtype)
  mesh = sharding.make_mesh()
  _, shardings = init_train_state(model_cfg, optimizer, mesh, seed=0)
  return {"tokenizer": tokenizer, "model": models.Decoder(model_cfg), "optimizer": optimizer, "mesh": mesh,
          "shardings": shardings, "state": lambda: init_train_state(model_cfg, optimizer, mesh, seed=0)[0]}


def build(tiny, kind: str, **rl):
  return make_sft_steps(sft_steps_config(kind, **rl), tiny["model"], tiny["optimizer"], tiny["shardings"],
                        tiny["mesh"], tiny["tokenizer"], EXAMPLES)


def groups_of(question_ids, passed, valid=None, group_size=2) -> Groups:
  """Fake sampled groups: group g asks EXAMPLES[question_ids[g]]; passed / valid per row."""
  n = len(question_ids) * group_size
  passed = np.asarray(passed, bool)
  return Groups(group_size, [[0]] * len(question_ids), [EXAMPLES[q] for q in question_ids for _ in range(group_size)],
                np.zeros((n, 1), np.int32), np.ones(n, np.int32), np.zeros((n, 1), np.float32),
                np.zeros((n, 1), np.float32), np.ones(n, bool) if valid is None else np.asarray(valid, bool),
                passed.astype(np.float32), passed)


def rollouts_of(groups: Groups) -> Rollouts:
  return Rollouts(None, groups, groups, 1, groups.num_groups, [], 0.0, 0.0)


def rl_metrics(finite=True) -> dict:
  return {"loss": jnp.float32(2.0), "finite": jnp.bool_(finite), "finite_terms": {"loss": jnp.bool_(finite)}}


# ------------------------------------------------------------------------------------------ ReLIFT

def test_all_failed_questions_enter_the_buffer_once_in_order():
  relift = ReLIFT(None, EXAMPLES, size=4)
  # Groups ask q0, q1, q2, q1, q3: q2 has one passing row; q3's passing row failed a reward (invalid), so it fails.
  sampled = groups_of([0, 1, 2, 1, 3], passed=[0, 0, 0, 0, 1, 0, 0, 0, 1, 0], valid=[1] * 8 + [0, 1])
  assert relift.add_failed(sampled) == [0, 1, 3]  # q1 twice in one step: once
  assert relift.add_failed(groups_of([3, 4, 0], passed=[0] * 6)) == [4]  # q3 and q0 are held already
  assert relift.buffer == [0, 1, 3, 4]
  fresh = ReLIFT(None, EXAMPLES, size=4)
  fresh.load_state_dict(json.loads(json.dumps(relift.state_dict())))  # as the checkpoint's JSON record holds it
  assert fresh.buffer == [0, 1, 3, 4]
  assert fresh.add_failed(groups_of([4, 2], passed=[0] * 4)) == [2]  # still refuses what it held before the resume
  with pytest.raises(ValueError, match="not a train question"):
    ReLIFT(None, EXAMPLES[:2], size=1).add_failed(groups_of([3], passed=[0, 0]))


def test_a_full_buffer_trains_one_sft_step_on_its_oldest_demonstrations(tiny):
  relift = build(tiny, "relift", relift_buffer=2)
  seen, update = [], relift.update.update

  def recording(state, batch, frozen):
    seen.append(jax.device_get(batch))
    return update(state, batch, frozen)

  relift.update.update = recording
  state = tiny["state"]()
  metrics = rl_metrics()
  state, out, host = relift.after_rl(state, 0, rollouts_of(groups_of([3, 0], passed=[0, 1, 0, 0])), metrics)
  assert out is metrics and not seen  # one question held: no SFT step
  assert host == {"train/sft_step": 0.0, "train/sft_demo_tokens": 0.0, "train/relift_buffer": 1.0}
  params = jax.device_get(state["params"])
  state, out, host = relift.after_rl(state, 1, rollouts_of(groups_of([1, 2], passed=[0] * 4)), rl_metrics())
  assert relift.buffer == [2]  # q0 and q1 trained (the oldest two); q2 waits for the next step
  assert host["train/sft_step"] == 1.0 and host["train/relift_buffer"] == 1.0
  (batch,) = seen
  tokenizer = tiny["tokenizer"]
  for row, example in enumerate((EXAMPLES[0], EXAMPLES[1])):  # the rows are q0's and q1's demonstrations
    text = tokenizer.decode(batch.tokens[row][batch.positions[row] >= 0].tolist())
    assert text.startswith(example.question + "\n") and example.rationale in text and example.answer in text
  # A char tokenizer: rationale and answer one id per character, plus <think>, </think> and eos.
  demo_tokens = sum(len(e.rationale) + len(e.answer) + 3 for e in EXAMPLES[:2])
  assert host["train/sft_demo_tokens"] == batch.demo_mask.sum() == demo_tokens
  # The SFT step's loss is NLL - coef * entropy on the demonstration tokens, by hand at the params before it.
  logits = np.asarray(jax.jit(tiny["model"].apply)({"params": params}, batch.tokens, batch.positions)[0], np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  targets = np.concatenate([batch.tokens[:, 1:], batch.tokens[:, :1]], axis=1)
  target_log_p = np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  entropy = -(np.exp(log_p) * log_p).sum(-1)
  mask = batch.demo_mask
  nll, mean_entropy = -(target_log_p * mask).sum() / mask.sum(), (entropy * mask).sum() / mask.sum()
  out = jax.device_get(out)
  assert out["sft_demo_entropy"] == pytest.approx(mean_entropy, rel=1e-4)
  assert out["sft_loss"] == pytest.approx(nll - COEF * mean_entropy, rel=1e-4)
  assert out["loss"] == 2.0 and out["finite"] and out["finite_terms"]["loss"] and out["finite_terms"]["sft_loss"]
  assert int(state["step"]) == 1  # the SFT update counts on the shared optimiser state
  # Either update not finite makes the step's "finite" false (the loop then names the terms).
  state, out, _ = relift.after_rl(state, 2, rollouts_of(groups_of([4], passed=[0, 0])), rl_metrics(finite=False))
  assert not bool(out["finite"]) and bool(out["finite_terms"]["sft_loss"]) and relift.buffer == []


def test_relift_needs_the_verifier_and_a_buffer_that_can_fill(tiny):
  with pytest.raises(ConfigError, match="add 'correctness' to config.rl.rewards"):
    make_sft_steps(sft_steps_config("relift", rewards="length"), None, None, None, tiny["mesh"], None, EXAMPLES)
  with pytest.raises(ConfigError, match="config.rl.relift_buffer=6 is more than the 5 train questions"):
    make_sft_steps(sft_steps_config("relift", relift_buffer=6), None, None, None, tiny["mesh"], None, EXAMPLES)
  with pytest.raises(ConfigError, match="config.rl.sft_batch_size=9 is more than"):
    make_sft_steps(sft_steps_config("sasr", sft_batch_size=9), None, None, None, tiny["mesh"], None, EXAMPLES)
  assert make_sft_steps(sft_steps_config("none"), None, None, None, tiny["mesh"], None, EXAMPLES) is None


# ------------------------------------------------------------------------------------------ SASR

def test_sft_probability_and_draws_by_hand():
  assert sft_probability(3.0, 1.0) == 0.75 and sft_probability(2.0, 2.0) == 0.5
  assert sft_probability(0.0, 4.0) == 0.0 and sft_probability(float("nan"), 1.0) == 0.0
  assert sft_probability(0.0, 0.0) == 0.0
  indices, u = sasr_draws(7, 3, 5, 4)
  assert len(set(indices.tolist())) == 4 and set(indices.tolist()) <= set(range(5)) and 0.0 <= u < 1.0
  again = sasr_draws(7, 3, 5, 4)
  assert np.array_equal(again[0], indices) and again[1] == u  # a resumed run draws the same at step 3
  draws = [sasr_draws(7, n, 5, 4)[1] for n in range(400)]
  assert len(set(draws)) == 400 and np.mean(np.asarray(draws) < 0.3) == pytest.approx(0.3, abs=0.08)
  assert [sasr_draws(8, n, 5, 4)[1] for n in range(5)] != draws[:5]  # another seed, other draws


def test_sasr_gradient_norm_probability_and_first_norm_across_resume(tiny):
  sasr = build(tiny, "sasr", sft_batch_size=2)
  state = tiny["state"]()
  # A step whose draw u >= 3/4, so p = 1/2 and p = 3/4 below both make it an RL step (the state is not donated).
  step = next(n for n in range(100) if sasr_draws(0, n, len(EXAMPLES), 2)[1] >= 0.75)
  indices, _ = sasr_draws(0, step, len(EXAMPLES), 2)
  batch, demo_tokens, _ = sasr.update.batch(indices)
  assert demo_tokens == sum(len(EXAMPLES[i].rationale) + len(EXAMPLES[i].answer) + 3 for i in indices)
  # The gradient norm by hand: jax.grad of a masked NLL written here, the global norm summed in numpy.
  host = jax.device_get(batch)

  def nll(params):
    logits = tiny["model"].apply({"params": params}, host.tokens, host.positions)[0].astype(jnp.float32)
    log_p = jax.nn.log_softmax(logits)
    targets = jnp.concatenate([host.tokens[:, 1:], host.tokens[:, :1]], axis=1)
    picked = jnp.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    return -(picked * host.demo_mask).sum() / host.demo_mask.sum()

  grads = jax.device_get(jax.jit(jax.grad(nll))(state["params"]))
  hand_norm = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in jax.tree.leaves(grads)))
  g = sasr.update.grad_norm(state, batch)
  assert g == pytest.approx(hand_norm, rel=1e-4)
  # The run's first step measures g0 = g, so p = 1/2; g0 is what the checkpoint keeps.
  assert sasr.instead_of_rl(state, step) is None
  assert sasr.logged == {"train/sasr_p": 0.5, "train/sasr_grad_norm": pytest.approx(g, rel=1e-6)}
  assert json.loads(json.dumps(sasr.state_dict())) == {"first_grad_norm": pytest.approx(g, rel=1e-6)}
  _, metrics, logged = sasr.after_rl(state, step, None, rl_metrics())  # an RL step logs p and g with its metrics
  assert logged == {**sasr.logged, "train/sft_step": 0.0, "train/sft_demo_tokens": 0.0} and "sft_loss" not in metrics
  # A resumed run keeps its original g0 (here g / 3, so p = g / (g + g / 3) = 3/4), not its own first g.
  resumed = SASR(sasr.update, len(EXAMPLES), seed=0)
  resumed.load_state_dict({"first_grad_norm": g / 3})
  assert resumed.instead_of_rl(state, step) is None
  assert resumed.logged["train/sasr_p"] == pytest.approx(0.75, rel=1e-5) and resumed.first_grad_norm == g / 3
  # g0 tiny: p ~ 1, an SFT step on the step's demonstrations, with nothing sampled.
  resumed.load_state_dict({"first_grad_norm": 1e-12})
  out = resumed.instead_of_rl(state, step)
  assert out.host["train/sft_step"] == 1.0 and out.host["train/demo_tokens"] == demo_tokens
  assert out.host["train/sasr_p"] == pytest.approx(1.0) and int(out.state["step"]) == 1
  device = jax.device_get(out.device)
  assert device["finite"] and "sft_loss" in device and "loss" not in device
  assert device["sft_grad_norm"] == pytest.approx(g, rel=1e-4)  # the update's own gradient is the one measured


# ------------------------------------------------------------------------------------------ a resumed run

def relift_run_config(sft_workdir):
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  apply_overrides(config, [("init_checkpoint", sft_workdir), ("rl.rewards", "length,correctness"),
                           ("rl.reward_weights", "1.0,1.0"), ("train.eval_every", "0"), ("eval.num_examples", "0"),
                           ("train.steps", "2"), ("train.checkpoint_every", "100"), ("rl.sft_steps", "relift"),
                           ("rl.relift_buffer", "3")])
  return config


def test_relift_run_resumes_its_buffer_exactly(sft_workdir, length_reward, tmp_path):
  """2 steps of 2 groups, a buffer of 3: the nano policy fails every group, so step 1 buffers 2 questions and step 2
  fills the buffer and trains; a run stopped after step 1 must restore those 2 to take the same SFT step."""
  whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
  assert train.run(relift_run_config(sft_workdir), whole)["finished"]
  assert not train.run(relift_run_config(sft_workdir), resumed, should_stop=lambda step: step == 1)["finished"]
  at_one = Checkpoints(os.path.join(resumed, "checkpoints"), read_only=True).read_record(1)["data_state"]
  assert train.run(relift_run_config(sft_workdir), resumed)["finished"]
  keys = ("train/loss", "train/sft_loss", "train/sft_step", "train/relift_buffer", "train/total_demo_tokens")
  rows = {d: {r["step"]: {k: r.get(k) for k in keys} for r in read_metrics(os.path.join(d, "metrics.jsonl"))
              if "train/loss" in r} for d in (whole, resumed)}
  assert sorted(rows[resumed]) == sorted(rows[whole]) == [1, 2]
  for step in range(1, 3):
    for key in keys:
      want, got = rows[whole][step][key], rows[resumed][step][key]
      assert (got is None) == (want is None) and (want is None or got == pytest.approx(want, rel=1e-5)), (step, key)
  # Buffer sizes after each step 2, then 4 - 3: the SFT step after the resume trains 2 restored questions.
  assert [rows[whole][step]["train/sft_step"] for step in (1, 2)] == [0.0, 1.0]
  assert [rows[whole][step]["train/relift_buffer"] for step in (1, 2)] == [2.0, 1.0]
  assert len(at_one["sft_steps"]["buffer"]) == 2
  last = Checkpoints(os.path.join(whole, "checkpoints"), read_only=True)
  assert last.read_record(2)["data_state"]["sft_steps"] == Checkpoints(
      os.path.join(resumed, "checkpoints"), read_only=True).read_record(2)["data_state"]["sft_steps"]
