"""The trainer scores rollouts at the sampling temperature: its log-probs (ratio, KL, entropy, the old
log-probs of epochs > 1 and PPO's) are those of the distribution the sampler drew from (logits / T)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, sharding
from rr.config import base_config
from rr.data import CharTokenizer, encode_prompts
from rr.rewards import Combination, RowReward, compute_advantages
from rr.tasks import make_split
from rr.train import ppo
from rr.train.advantages import policy_log_probs
from rr.train.batch import put_batch, rollout_batch
from rr.train.grpo import GRPOStep
from rr.train.objectives import Parts
from rr.train.optimizer import make_optimizer
from rr.train.state import init_train_state

T = 0.7


def rl_config(**rl_overrides):
  config = base_config()
  rl = config.rl
  rl.temperature, rl.top_k, rl.top_p = T, 0, 1.0
  rl.prompts_per_step, rl.group_size, rl.max_new_tokens, rl.kl_beta = 2, 2, 6, 0.1
  for key, value in rl_overrides.items():
    rl[key] = value
  return config


@pytest.fixture(scope="module")
def setup():
  tok = CharTokenizer()
  cfg = models.model_config("nano", vocab_size=tok.vocab_size)  # float32 params and compute
  config = rl_config()
  examples = make_split("addition", "train", 4, difficulty=2, seed=0)
  prompts = encode_prompts(tok, [e.question for e in examples])
  width = -(-max(len(p) for p in prompts) // 8) * 8 + config.rl.max_new_tokens
  optimizer = make_optimizer(base_config().optim, 10, cfg.param_dtype)
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
  reward = RowReward("length", lambda prompt, completion, example: len(completion) / 10.0)
  model = models.Decoder(cfg)
  # rl.kl_beta > 0: the "kl" term reads the frozen reference, here a copy of the starting params.
  ref = jax.tree.map(jnp.copy, state["params"])
  step = GRPOStep(config, model, optimizer, shardings, mesh, tok, prompts, examples, [reward],
                  Combination("weighted_sum", np.array([1.0], np.float32)), width, frozen={"reference": ref},
                  frozen_models={"reference": model}, frozen_shardings={"reference": shardings["params"]})
  return step, state, cfg, width


def test_rollout_log_probs_are_the_sampling_distributions(setup):
  step, state, _, _ = setup
  groups, _, _ = step.collector.sample_round(state["params"], 0, 0)
  # The same call the step makes, straight to the sampler: `logprobs` are under logits / T.
  again = step.sampler(state["params"], groups.prompts, max_new_tokens=step.rl.max_new_tokens,
                       strategy=step.collector.strategy,
                       rng=jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 0), 0),
                       num_samples=step.rl.group_size)
  np.testing.assert_array_equal(groups.tokens, again.tokens)
  np.testing.assert_array_equal(groups.logprobs, again.logprobs)
  mask = np.arange(again.tokens.shape[1])[None, :] < again.lengths[:, None]
  assert np.abs(again.logprobs - again.model_logprobs)[mask].max() > 1e-2  # T = 0.7 is not T = 1


def test_trainer_log_probs_equal_the_samplers_at_temperature(setup):
  step, state, cfg, width = setup
  prompts = step.collector.prompts[:2]
  out = step.sampler(state["params"], prompts, max_new_tokens=6, strategy=step.collector.strategy,
                     rng=jax.random.key(3), num_samples=2)
  batch = rollout_batch(prompts, 2, out.tokens, out.lengths, out.logprobs, 1, 0, width)
  batch = batch.replace(rewards=np.zeros(4, np.float32), valid=np.ones(4, np.float32))
  device_batch = put_batch(batch, step.mesh)
  mask = batch.policy_mask > 0
  # Epochs > 1: the trainer's prepare step records the old log-probs before the first update.
  optimizer = make_optimizer(base_config().optim, 10, cfg.param_dtype)
  _, shardings = init_train_state(cfg, optimizer, step.mesh, seed=0)
  mu2 = GRPOStep(rl_config(epochs=2, kl_beta=0.0), models.Decoder(cfg), optimizer, shardings, step.mesh,
                 step.collector.tokenizer, step.collector.prompts, step.collector.examples, step.reward_fns,
                 step.collector.combine, width)
  old = np.asarray(mu2.prepare(state, device_batch, {})[0].old_logp)
  np.testing.assert_allclose(old[mask], batch.behaviour_logp[mask], rtol=1e-5, atol=1e-5)
  # PPO's targets record theirs at the same temperature.
  targets = jax.jit(ppo.make_targets(models.Decoder(cfg), ppo.ValueConfig(), (2, width - 6), temperature=T))
  ppo_state = {"params": state["params"], "value_head": models.init_value_head(cfg)}
  np.testing.assert_allclose(np.asarray(targets(ppo_state, device_batch).old_logp)[mask],
                             batch.behaviour_logp[mask], rtol=1e-5, atol=1e-5)


def test_one_rl_step_at_temperature_reads_no_gap_and_no_kl_to_an_equal_reference(setup):
  step, state, _, _ = setup  # its frozen reference is a copy of these params
  state = jax.tree.map(jnp.copy, state)  # the step donates its state
  metrics = jax.device_get(step(state, 0).device)
  assert bool(metrics["finite"])
  # The loss's log-probs (policy and reference) are the sampler's at T: no gap, and KL 0 to a reference
  # equal to the policy (a reference scored at another temperature would read a positive KL).
  assert metrics["logprob_gap_max"] < 1e-5
  assert abs(metrics["kl"]) < 1e-6


def test_kl_in_the_reward_comes_off_each_completions_reward_before_the_advantages(setup):
  """kl_mode="reward": advantages are those of reward - beta * sum_t k1_t, with the policy's and the
  reference's log-probs at T; the loss itself carries no KL term."""
  step, state, cfg, width = setup
  beta = 0.5
  config = rl_config(kl_beta=beta, kl_mode="reward", kl_estimator="k1")
  rl = config.rl
  model = models.Decoder(cfg)
  optimizer = make_optimizer(base_config().optim, 10, cfg.param_dtype)
  _, shardings = init_train_state(cfg, optimizer, step.mesh, seed=0)
  noise = jax.random.normal(jax.random.key(1), ())
  ref = jax.tree.map(lambda x: x + 0.05 * noise * jnp.ones_like(x), state["params"])
  reward_step = GRPOStep(config, model, optimizer, shardings, step.mesh, step.collector.tokenizer,
                         step.collector.prompts, step.collector.examples, step.reward_fns, step.collector.combine,
                         width, frozen={"reference": ref}, frozen_models={"reference": model},
                         frozen_shardings={"reference": shardings["params"]})
  groups, _, _ = reward_step.collector.sample_round(state["params"], 0, 0)
  batch = rollout_batch(groups.prompts, rl.group_size, groups.tokens, groups.lengths, groups.logprobs, 1, 0, width)
  device_batch = put_batch(batch, step.mesh)
  parts = Parts(model, temperature=T, shared_prompt=(rl.group_size, width - rl.max_new_tokens))
  logp_fn = jax.jit(lambda params, b: policy_log_probs(parts, params, b))
  logp = np.asarray(logp_fn(state["params"], device_batch))
  ref_logp = np.asarray(logp_fn(ref, device_batch))
  kl_N = ((logp - ref_logp) * batch.policy_mask).sum(-1)
  assert np.abs(kl_N).max() > 1e-3  # the reference differs, so the penalty is not 0
  want = np.asarray(compute_advantages("grpo", groups.total_N - beta * kl_N, rl.group_size, valid_B=groups.valid_N))
  seen = {}
  update = reward_step.update

  def spy(s, b, frozen):
    seen["advantages"] = np.asarray(b.advantages)
    return update(s, b, frozen)

  reward_step.update = spy
  out = reward_step(jax.tree.map(jnp.copy, state), 0)
  metrics = jax.device_get(out.device)
  np.testing.assert_allclose(seen["advantages"], want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(metrics["kl_reward_penalty"], beta * kl_N.mean(), rtol=1e-4)
