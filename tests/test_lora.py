"""LoRA (rr.models.lora, rr.train.state): the merge equals numpy's, B = 0 starts at the base, SFT / GRPO / kd steps
move only the adapters, the merged export computes the LoRA model's logits, a LoRA run resumes exactly, and bad
settings stop before any work."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, sharding, train
from rr.checkpoint import Checkpoints
from rr.config import apply_overrides, base_config, load_config
from rr.losses import PolicyLossConfig, distillation_loss, token_log_probs
from rr.main import main
from rr.train.batch import TrainBatch, put_batch, rollout_batch, sft_batch
from rr.train.metrics import read_metrics
from rr.train.objectives import Forward, Parts, make_objective
from rr.train.optimizer import make_optimizer
from rr.train.sft import make_sft_step
from rr.train.state import LoraSettings, init_train_state, policy_params, trainable, untrained
from rr.train.step import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py")
ALL_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
VOCAB = 24


def lora_state(cfg, targets=ALL_TARGETS, rank=2, alpha=4.0, lr=1e-2, seed=0):
  optim = base_config().optim
  optim.lr, optim.warmup_steps, optim.weight_decay = lr, 0, 0.0
  optimizer = make_optimizer(optim, 10, "float32")
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(cfg, optimizer, mesh, seed, lora=LoraSettings(rank, alpha, targets, "float32"))
  return state, shardings, optimizer, mesh


def host(tree):
  return jax.tree.map(np.asarray, tree)


def assert_same(a, b):
  jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def assert_only_adapters_moved(before, after):
  assert_same(after["params"], before["params"])  # the frozen base, bit for bit
  for leaf_before, leaf_after in zip(jax.tree.leaves(before["lora"]), jax.tree.leaves(after["lora"])):
    assert not np.array_equal(np.asarray(leaf_after), leaf_before)  # every A and B moved


def test_merge_equals_numpy_and_adapters_carry_their_kernels_axes():
  cfg = models.model_config("nano", vocab_size=VOCAB, qkv_bias=True)
  params = host(models.init_params(cfg, jax.random.key(0)))
  adapters = models.init_adapters(cfg, ("v", "q", "o", "down"), 3, jax.random.key(1))
  rng = np.random.default_rng(0)
  adapters = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), adapters)  # B != 0
  merged = host(jax.jit(models.merge_adapters)(params, adapters, 0.5))
  layer = "layers_1"
  q, o = params[layer]["attn"]["q"], params[layer]["attn"]["o"]
  ab = adapters[layer]["attn"]
  np.testing.assert_allclose(merged[layer]["attn"]["q"]["kernel"],
                             q["kernel"] + 0.5 * np.einsum("dr,rnh->dnh", ab["q"]["a"], ab["q"]["b"]), atol=1e-6)
  np.testing.assert_allclose(merged[layer]["attn"]["o"]["kernel"],
                             o["kernel"] + 0.5 * np.einsum("nhr,rd->nhd", ab["o"]["a"], ab["o"]["b"]), atol=1e-6)
  np.testing.assert_array_equal(merged[layer]["attn"]["q"]["bias"], q["bias"])  # the bias is not adapted
  assert_same(merged[layer]["attn"]["k"], params[layer]["attn"]["k"])  # not a target
  assert_same(merged[layer]["mlp"]["up"], params[layer]["mlp"]["up"])
  assert_same(merged["embed"], params["embed"])
  kernel_axes = models.param_logical_axes(cfg)[layer]
  axes = models.adapter_logical_axes(cfg, ("q", "o", "down"))[layer]
  assert tuple(axes["attn"]["q"]["a"]) == (kernel_axes["attn"]["q"]["kernel"][0], "lora")
  assert tuple(axes["attn"]["q"]["b"]) == ("lora", *kernel_axes["attn"]["q"]["kernel"][1:])
  assert tuple(axes["attn"]["o"]["a"]) == (*kernel_axes["attn"]["o"]["kernel"][:2], "lora")
  assert tuple(axes["mlp"]["down"]["b"]) == ("lora", kernel_axes["mlp"]["down"]["kernel"][1])
  fresh = models.init_adapters(cfg, ALL_TARGETS, 4, jax.random.key(2))[layer]["mlp"]["gate"]
  assert not np.any(np.asarray(fresh["b"])) and np.std(np.asarray(fresh["a"])) > 0


def test_with_b_zero_the_lora_model_computes_the_base_models_logits_and_the_optimiser_sees_only_adapters():
  cfg = models.model_config("nano", vocab_size=VOCAB)
  state, _, optimizer, _ = lora_state(cfg)
  tokens = np.random.default_rng(0).integers(0, VOCAB, (2, 7)).astype(np.int32)
  positions = np.broadcast_to(np.arange(7, dtype=np.int32), (2, 7))
  parts, batch = Parts(models.Decoder(cfg)), TrainBatch(tokens=tokens, positions=positions)
  logits = jax.jit(lambda trained, frozen: Forward(parts, trained, batch, frozen, None).logits)
  lora_logits = logits(trainable(state), untrained(state))
  base_logits = logits(state["params"], {})  # a full fine-tune's view of the base
  np.testing.assert_array_equal(np.asarray(lora_logits), np.asarray(base_logits))
  assert set(trainable(state)) == {"lora"}
  assert jax.tree.structure(state["opt_state"]) == jax.tree.structure(optimizer.init({"lora": state["lora"]}))


def test_a_grpo_step_with_a_kl_to_the_frozen_base_moves_only_the_adapters_the_right_way():
  cfg = models.model_config("nano", vocab_size=VOCAB)
  state, shardings, optimizer, mesh = lora_state(cfg)
  model = models.Decoder(cfg)
  batch = rollout_batch([[3, 4, 5]], 2, np.array([[7, 8, 1], [9, 10, 1]], np.int32), np.array([3, 3]),
                        np.zeros((2, 3), np.float32), eos_id=1, pad_id=0, width=8)
  batch = batch.replace(advantages=np.array([1.0, -1.0], np.float32))
  loss_cfg = PolicyLossConfig(kl_beta=0.1)
  step = make_train_step(make_objective(None, Parts(model, {"reference": model}, loss_cfg=loss_cfg), ["policy", "kl"]),
                         optimizer, shardings, mesh, {"reference": shardings["params"]})
  before = host(state)
  reference = jax.tree.map(jnp.copy, state["params"])  # as rr.train.grpo's default reference: the base, copied

  @jax.jit
  def completion_logp(params):
    logits, _ = model.apply({"params": params}, batch.tokens, batch.positions)
    targets = jnp.concatenate([batch.tokens[:, 1:], jnp.zeros_like(batch.tokens[:, :1])], axis=1)
    return (token_log_probs(logits, targets) * batch.policy_mask).sum(axis=1)

  start = np.asarray(completion_logp(policy_params(state)))
  state, metrics = step(state, put_batch(batch, mesh), {"reference": reference})
  assert bool(metrics["finite"]) and abs(float(metrics["kl"])) < 1e-6  # B = 0: the policy is the base
  state, metrics = step(state, put_batch(batch, mesh), {"reference": reference})
  assert bool(metrics["finite"]) and float(metrics["kl"]) > 0
  assert_only_adapters_moved(before, state)
  after = np.asarray(completion_logp(policy_params(state)))
  assert after[0] > start[0] and after[1] < start[1]


def test_a_kd_step_against_a_frozen_teacher_moves_only_the_adapters_from_the_bases_divergence():
  config = load_config(f"{SFT}:runlocal")
  from rr.data import SFTBatches
  from rr.data.inputs import load_inputs

  inputs = load_inputs(config)
  vocab = inputs.tokenizer.vocab_size
  cfg = models.model_config("nano", vocab_size=vocab)
  teacher_params = models.init_params(cfg, jax.random.key(5))  # another model of the student's shape
  state, shardings, optimizer, mesh = lora_state(cfg)
  step = make_sft_step(models.Decoder(cfg), optimizer, shardings, mesh, config, ("nll", "kd"),
                       {"teacher": models.Decoder(cfg)}, {"teacher": shardings["params"]}, vocab)
  arrays = SFTBatches(inputs.train, inputs.tokenizer, 4, config.data.max_len, 0).batch(0)
  before = host(state)
  # Rows are right-padded: positions 0..T-1 give their real tokens the same logits, and padding is off the mask.
  logits = lambda params: models.forward(cfg, params, arrays["tokens"])
  want = distillation_loss(logits(before["params"]), logits(teacher_params), arrays["loss_mask"],
                           config.distill.divergence, beta=config.distill.beta, temperature=config.distill.temperature,
                           top_k=config.distill.top_k, vocab_size=vocab)
  frozen = {"teacher": teacher_params}
  state, metrics = step(state, put_batch(sft_batch(arrays), mesh), frozen)
  np.testing.assert_allclose(float(metrics["kd"]), float(want), rtol=1e-5)  # B = 0: the base's divergence
  state, metrics = step(state, put_batch(sft_batch(arrays), mesh), frozen)
  assert bool(metrics["finite"])
  assert_only_adapters_moved(before, state)


# ---------------------------------------------------------------------------------- whole runs: SFT, resume, export

def lora_config(*overrides):
  config = load_config(f"{SFT}:runlocal")
  apply_overrides(config, [("lora.rank", "4"), ("lora.alpha", "8"), ("lora.targets", "q,v,o,up,down"),
                           ("optim.lr", "1e-2"), ("train.steps", "6"), ("train.checkpoint_every", "6"),
                           ("train.eval_every", "0"), ("eval.num_examples", "0"), *overrides])
  return config


def losses(workdir):
  return {r["step"]: r["train/loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if "train/loss" in r}


def saved_state(workdir):
  checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), read_only=True)
  state = checkpoints.read_state(checkpoints.latest_step())
  checkpoints.close()
  return state


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
  """A LoRA SFT run stopped at step 4 (a checkpoint then) and resumed to step 6."""
  workdir = str(tmp_path_factory.mktemp("lora"))
  assert train.run(lora_config(), workdir, should_stop=lambda step: step == 4)["step"] == 4
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]
  train.run(lora_config(), workdir)
  return workdir


def test_sft_trains_only_the_adapters_over_a_bit_identical_base_and_resumes_as_an_uninterrupted_run(lora_run):
  from rr.data import SFTBatches
  from rr.data.inputs import load_inputs

  config = lora_config()
  inputs = load_inputs(config)
  cfg = models.model_config("nano", vocab_size=inputs.tokenizer.vocab_size)
  optimizer = make_optimizer(config.optim, config.train.steps, "float32")
  mesh = sharding.make_mesh()
  state, shardings = init_train_state(cfg, optimizer, mesh, config.seed,
                                      lora=LoraSettings(4, 8.0, ("q", "v", "o", "up", "down"), "bfloat16"))
  start = host(state)
  step = make_sft_step(models.Decoder(cfg), optimizer, shardings, mesh, config)
  batches = SFTBatches(inputs.train, inputs.tokenizer, config.train.batch_size, config.data.max_len, config.seed)
  step_losses = []
  for n in range(config.train.steps):  # the same run without the loop, checkpoints or a resume
    state, metrics = step(state, put_batch(sft_batch(batches.batch(n)), mesh), {})
    step_losses.append(float(metrics["loss"]))
  curve = losses(lora_run)
  assert sorted(curve) == [2, 4, 6] and curve[6] < curve[2]
  np.testing.assert_allclose([curve[s] for s in (2, 4, 6)], np.mean(np.reshape(step_losses, (3, 2)), axis=1),
                             rtol=1e-5)  # the logged loss is each window's mean
  saved = saved_state(lora_run)
  assert int(saved["step"]) == 6 and float(saved["lora_scale"]) == 2.0
  assert saved["params"]["layers_0"]["attn"]["q"]["kernel"].dtype == jnp.bfloat16  # lora.base_dtype
  assert saved["lora"]["layers_0"]["attn"]["q"]["a"].dtype == np.float32
  assert "k" not in saved["lora"]["layers_0"]["attn"] and "gate" not in saved["lora"]["layers_0"]["mlp"]
  assert_only_adapters_moved(start, saved)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), saved["lora"], host(state["lora"]))


def test_the_merged_export_and_a_frozen_copy_compute_the_lora_models_logits(lora_run, tmp_path):
  from rr.convert import rr_to_hf
  from rr.train.frozen import load_frozen

  saved = saved_state(lora_run)
  vocab = saved["params"]["embed"]["embedding"].shape[0]
  cfg = models.model_config("nano", vocab_size=vocab)
  tokens = np.random.default_rng(1).integers(0, vocab, (2, 9)).astype(np.int32)
  positions = np.broadcast_to(np.arange(9, dtype=np.int32), (2, 9))
  fwd = Forward(Parts(models.Decoder(cfg)), trainable(saved), TrainBatch(tokens=tokens, positions=positions),
                untrained(saved), None)  # what the train step computes
  hf_cfg, hf_params = models.from_hf(rr_to_hf(lora_run, str(tmp_path / "hf")))
  np.testing.assert_allclose(np.asarray(models.forward(hf_cfg, hf_params, tokens)), np.asarray(fwd.logits),
                             atol=1e-5)
  frozen = load_frozen(lora_run, sharding.make_mesh(), vocab_size=vocab)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, atol=1e-6), frozen.params, hf_params)


def test_resuming_with_other_lora_settings_is_refused_and_leaves_the_run(lora_run, capsys):
  code = main(["--config", f"{SFT}:runlocal", "--workdir", lora_run, "--config.lora.rank=4", "--config.lora.alpha=2",
               "--config.lora.targets=q,v,o,up,down", "--config.train.steps=8"])
  err = capsys.readouterr().err
  assert code == 2 and "lora=" in err and "new --workdir" in err
  assert sorted(os.listdir(os.path.join(lora_run, "checkpoints"))) == ["4", "6"]


@pytest.mark.parametrize("flag,named", [("--config.lora.targets=q,vv", "'vv'"), ("--config.lora.rank=-1", "rank"),
                                        ("--config.lora.base_dtype=int8", "base_dtype")])
def test_bad_lora_settings_stop_before_any_work(tmp_path, capsys, flag, named):
  workdir = tmp_path / "w"
  code = main(["--config", f"{SFT}:runlocal", "--workdir", str(workdir), "--config.lora.rank=4", flag])
  err = capsys.readouterr().err
  assert code == 2 and "config.lora." in err and named in err and err.count("\n") == 1
  assert not workdir.exists()
