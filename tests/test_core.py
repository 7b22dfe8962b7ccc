"""The trainer core's seams: objective terms compose to the one policy loss they replaced, KL / entropy / mu > 1
are compositions, and a toy objective term and a toy prompt source defined in this file alone train a run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, train
from rr.config import ConfigError, load_config
from rr.losses import PolicyLossConfig, policy_loss
from rr.train import objectives, sources
from rr.train.batch import TrainBatch
from rr.train.objectives import Forward, Parts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ArrayForward(Forward):
  """A Forward whose model outputs are given arrays, so terms can be checked against the loss on arrays."""

  def __init__(self, parts, batch, logp, ref_logp, entropy):
    super().__init__(parts, {}, batch, {"reference": None}, None)
    self.__dict__.update(logp=logp, entropy=entropy)
    self._ref = ref_logp

  def frozen_logp(self, name):
    return self._ref


def _arrays(seed=0, b=4, t=7):
  rng = np.random.default_rng(seed)
  mask = np.zeros((b, t), np.float32)
  for row, (lo, hi) in enumerate([(1, 6), (2, 4), (0, 7), (3, 5)]):
    mask[row, lo:hi] = 1.0
  logp = jnp.asarray(-rng.uniform(0.1, 3.0, (b, t)), jnp.float32)
  return dict(logp=logp, old=jnp.asarray(logp + rng.normal(0, 0.2, (b, t)), jnp.float32),
              ref=jnp.asarray(logp + rng.normal(0, 0.3, (b, t)), jnp.float32),
              ent=jnp.asarray(rng.uniform(0.5, 2.0, (b, t)), jnp.float32), adv=jnp.asarray(rng.normal(size=b), jnp.float32),
              mask=jnp.asarray(mask), has_eos=jnp.asarray([True, False, True, True]))


@pytest.mark.parametrize("cfg", [
    PolicyLossConfig(kl_beta=0.1, kl_mode="gradient", entropy_coef=0.01),
    PolicyLossConfig(kl_beta=0.1, kl_mode="loss", kl_estimator="k2", aggregation="token-mean"),
    PolicyLossConfig(kl_beta=0.05, entropy_coef=0.02, aggregation="seq-mean-token-sum-norm", max_completion_len=7,
                     mask_truncated=True, eps_high=0.28),
    PolicyLossConfig(kl_beta=0.1, kl_mode="reward"),
], ids=["kl-gradient+entropy", "kl-loss-k2", "drgrpo-truncated", "kl-reward"])
def test_policy_kl_entropy_terms_sum_to_the_one_policy_loss(cfg):
  """The composition (policy + kl + entropy) has the value and the gradient of rr.losses.policy_loss with
  kl_beta and entropy_coef set: the single loss every RL run used before the terms were split."""
  a = _arrays()
  parts = Parts(models.Decoder(models.model_config("nano", vocab_size=16)), loss_cfg=cfg)
  names = ["policy", "kl"] + (["entropy"] if cfg.entropy_coef else [])
  terms = [objectives.TERMS.get(n)(None, parts) for n in names]

  def composed(logp):
    batch = TrainBatch(tokens=None, positions=None, policy_mask=a["mask"], has_eos=a["has_eos"],
                       behaviour_logp=a["old"], advantages=a["adv"], old_logp=a["old"])
    fwd = ArrayForward(parts, batch, logp, a["ref"], a["ent"])
    outs = [term(fwd) for term in terms]
    return sum(loss for loss, _ in outs), {k: v for _, m in outs for k, v in m.items()}

  def single(logp):
    return policy_loss(logp, a["old"], a["adv"], a["mask"], cfg, ref_logp_BxT=a["ref"], entropy_BxT=a["ent"],
                       has_eos_B=a["has_eos"])

  (got, got_m), got_g = jax.value_and_grad(composed, has_aux=True)(a["logp"])
  (want, want_m), want_g = jax.value_and_grad(single, has_aux=True)(a["logp"])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got_g, want_g, rtol=1e-5, atol=1e-7)
  for key in ("pg_loss", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean"):
    np.testing.assert_allclose(got_m[key], want_m[key], rtol=1e-6, atol=1e-7)
  assert float(jnp.abs(want_g).sum()) > 0


def test_unknown_names_say_what_was_meant():
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal")
  config.train.loss_terms = "policy,entropi"
  with pytest.raises(ConfigError, match=r"config.train.loss_terms='policy,entropi': no objective term 'entropi'"
                                       r" is registered \(did you mean 'entropy'"):
    objectives.term_names(config, "grpo")
  config.train.loss_terms = ""
  assert objectives.term_names(config, "grpo") == ["policy"]
  config.rl.kl_beta, config.rl.entropy_coef = 0.1, 0.01
  assert objectives.term_names(config, "grpo", value_head=True) == ["policy", "kl", "entropy", "value"]
  config.rl.prompt_source = "unifrom"
  with pytest.raises(ConfigError, match=r"no prompt source 'unifrom' is registered \(did you mean 'uniform'"):
    sources.make_prompt_source(config, [None] * 10)


# ------------------------------------------------------------------------------------------ toy parts, trained

SAMPLED = []  # (step, round, indices) the toy source handed out, in this process


@objectives.TERMS.register("toy_length")
def toy_length(config, parts):
  """A toy term: a tiny push towards longer completions through their log-probs, with its own metric."""

  def term(fwd):
    per_row = jnp.sum(jnp.where(fwd.batch.policy_mask > 0, fwd.logp, 0.0), axis=1)
    return -1e-3 * per_row.mean(), {"toy_length_logp": jax.lax.stop_gradient(per_row.mean())}

  return term


@sources.PROMPT_SOURCES.register("toy_first_questions")
class FirstQuestions(sources.UniformPrompts):
  """A toy source: only the first 8 questions, in a rotating order whose position is checkpointed state."""

  def __init__(self, config, examples):
    super().__init__(config, examples)
    self.offset = 0

  def sample(self, step, round_, count):
    picked = (self.offset + np.arange(count)) % 8
    SAMPLED.append((step, round_, picked.tolist()))
    return picked

  def update(self, step, rollouts):
    self.offset += 1

  def state_dict(self):
    return {"offset": self.offset}

  def load_state_dict(self, state):
    self.offset = state.get("offset", 0)


def _reference_workdir(config, path: str) -> str:
  """A saved rr run of the config's model with other random params: a frozen reference to load by path."""
  from rr.checkpoint import Checkpoints
  from rr.data.tokenizers import tokenizer_from_config
  from rr.sharding import make_mesh
  from rr.train.optimizer import make_optimizer
  from rr.train.setup import build_model_config
  from rr.train.state import init_train_state, run_record

  vocab = tokenizer_from_config(config).vocab_size
  cfg = build_model_config(config, vocab)
  state, _ = init_train_state(cfg, make_optimizer(config.optim, 10, cfg.param_dtype), make_mesh(), seed=7)
  checkpoints = Checkpoints(os.path.join(path, "checkpoints"))
  checkpoints.save(1, state, run_record(cfg, vocab))
  checkpoints.close()
  return path


def test_a_toy_term_and_a_toy_prompt_source_from_this_file_train_and_resume(tmp_path):
  """Also: the KL reference comes from rl.reference (another saved run), not from the starting params."""
  overrides = [("train.steps", "3"), ("train.eval_every", "0"), ("train.checkpoint_every", "2"),
               ("eval.num_examples", "4"), ("rl.max_new_tokens", "8"), ("train.loss_terms", "policy,toy_length,kl"),
               ("rl.prompt_source", "toy_first_questions"), ("rl.kl_beta", "0.05")]
  config = load_config(os.path.join(ROOT, "configs", "grpo.py") + ":runlocal", overrides)
  config.rl.reference = _reference_workdir(config, str(tmp_path / "reference"))
  SAMPLED.clear()
  workdir = str(tmp_path / "run")
  summary = train.run(config, workdir, should_stop=lambda step: step == 2)
  assert summary["step"] == 2 and not summary["finished"]
  assert [s[2] for s in SAMPLED] == [[0, 1], [1, 2]]  # the source's own order, not uniform draws
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train_rows = [r for r in rows if "train/loss" in r]
  assert train_rows and all(np.isfinite(r["train/toy_length_logp"]) and r["train/toy_length_logp"] < 0
                            for r in train_rows)
  assert "train/clip_ratio/region_mean" in train_rows[0]
  # At step 1 the policy is still its starting params: KL to those would be 0; to the saved reference it is not.
  assert train_rows[0]["train/kl"] > 1e-3
  # Resume: the source's checkpointed offset (2 after two steps) continues the order exactly; the restore would
  # refuse a checkpoint whose state holds more than the student's leaves, so the reference was not saved in it.
  SAMPLED.clear()
  summary = train.run(config, workdir)
  assert summary["finished"] and summary["step"] == 3
  assert [s[2] for s in SAMPLED] == [[2, 3]]


# ------------------------------------------------------------------------------------------ prepare: mu > 1, KL reward

def test_prepare_records_old_logp_for_mu_2_and_takes_the_kl_penalty_off_the_rewards():
  """mu > 1 and kl_mode="reward" are steps of the one device-side prepare: the recorded old log-probs are the
  current params' (at the sampling temperature), and the advantages are GRPO's of reward - beta * sum_t k1."""
  from rr.config import base_config
  from rr.losses import sequence_log_probs
  from rr.rewards import compute_advantages
  from rr.sharding import make_mesh
  from rr.train.advantages import ESTIMATORS, make_prepare
  from rr.train.batch import put_batch, rollout_batch
  from rr.train.grpo import policy_loss_config
  from rr.train.optimizer import make_optimizer
  from rr.train.state import init_train_state

  config = base_config()
  rl = config.rl
  rl.group_size, rl.temperature, rl.epochs, rl.kl_beta, rl.kl_mode, rl.kl_estimator = 2, 0.7, 2, 0.5, "reward", "k1"
  cfg = models.model_config("nano", vocab_size=16)
  model, mesh = models.Decoder(cfg), make_mesh()
  optimizer = make_optimizer(config.optim, 10, cfg.param_dtype)
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  ref_params = init_train_state(cfg, optimizer, mesh, seed=1)[0]["params"]
  tokens = np.array([[7, 8, 1], [9, 10, 11], [4, 1, 0], [5, 6, 1]], np.int32)
  batch = rollout_batch([[3, 4, 5], [6, 2]], 2, tokens, np.array([3, 3, 2, 3]), np.zeros((4, 3), np.float32),
                        eos_id=1, pad_id=0, width=6)
  rewards = np.array([1.0, 0.0, 0.5, np.nan], np.float32)
  batch = batch.replace(rewards=rewards, valid=np.array([1, 1, 1, 0], np.float32))
  parts = Parts(model, {"reference": model}, temperature=0.7, shared_prompt=(2, 3), loss_cfg=policy_loss_config(rl))
  prepare = make_prepare(config, parts, ESTIMATORS.get("grpo")(config, parts), shardings, mesh,
                         {"reference": shardings["params"]})
  out, metrics = prepare(state, put_batch(batch, mesh), {"reference": ref_params})

  def logp(params):  # a plain forward, not the shared-prompt one the prepare step uses
    logits, _ = model.apply({"params": params}, batch.tokens, batch.positions)
    return np.asarray(sequence_log_probs(logits, batch.tokens, 0.7))

  mask = batch.policy_mask
  np.testing.assert_allclose(np.asarray(out.old_logp) * mask, logp(state["params"]) * mask, atol=1e-5)
  kl_B = ((logp(state["params"]) - logp(ref_params)) * mask).sum(-1)
  np.testing.assert_allclose(np.asarray(out.kl_penalty), 0.5 * kl_B, rtol=1e-4, atol=1e-6)
  want = compute_advantages("grpo", rewards - 0.5 * kl_B, 2, valid_B=batch.valid > 0)
  np.testing.assert_allclose(np.asarray(out.advantages), np.asarray(want), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics["kl_reward_penalty"], 0.5 * kl_B[:3].mean(), rtol=1e-4)
  assert abs(kl_B[:3]).max() > 1e-3  # two different models: the penalty is not trivially 0
  rl.epochs, rl.kl_beta = 1, 0.0  # mu = 1 without KL: nothing but the advantages is added
  parts = Parts(model, temperature=0.7, shared_prompt=(2, 3), loss_cfg=policy_loss_config(rl))
  prepare = make_prepare(config, parts, ESTIMATORS.get("grpo")(config, parts), shardings, mesh)
  out, metrics = prepare(state, put_batch(batch, mesh), {})
  assert out.old_logp is None and out.kl_penalty is None and metrics == {}
