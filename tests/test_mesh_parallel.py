"""Data, FSDP and tensor parallelism on 8 forced CPU devices equal one device: the SFT step with logit
distillation from a frozen teacher on the mesh (its NLL and KD terms), the RL step (shared-prompt forward
included) and greedy samples; and the params really are split (FSDP x tensor: an eighth of each MLP kernel per
device). One subprocess for every mesh, one-layer models: 8-device compilation is most of the time."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MESHES = {"one": (1, 1, 1), "data8": (8, 1, 1), "fsdp8": (1, 8, 1), "data4_tensor2": (4, 1, 2),
          "fsdp4_tensor2": (1, 4, 2)}  # (data, fsdp, tensor)
VOCAB = 24  # nano (D 32, F 64, 4 heads, 2 kv heads) and micro (D 64, F 176): every split divides

# For each mesh, from the same host state: 2 SFT steps of nll + kd to a micro teacher loaded onto the mesh,
# 2 RL steps (policy, shared-prompt forward), then greedy samples from the SFT params. Writes <out>/<mesh>.npz
# (per-step terms and grad norms, final params, samples) and prints the sharding facts as JSON.
SCRIPT = r"""
import json, os, sys
import jax, numpy as np
from rr import models, sharding
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, base_config
from rr.losses import PolicyLossConfig
from rr.sampler import Greedy, Sampler
from rr.train import memory
from rr.train.batch import put_batch, rollout_batch, sft_batch
from rr.train.frozen import load_frozen
from rr.train.objectives import Parts, make_objective
from rr.train.optimizer import make_optimizer
from rr.train.setup import build_mesh
from rr.train.sft import make_sft_step
from rr.train.state import init_train_state, run_record, state_shardings
from rr.train.step import make_train_step

out_dir, meshes, vocab = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
assert jax.device_count() == 8
config = base_config()
# Adam's first update is about lr * g / |g|: a gradient near 0 moves its param by up to lr whichever way float32
# rounding tips it, so the params are compared to 5% of lr (they differ by < 1e-5 here), the losses to 1e-5.
config.optim.lr, config.optim.warmup_steps = 1e-3, 0
config.distill.weight = 0.5
cfg = models.model_config("nano", vocab_size=vocab, num_layers=1)
optimizer = make_optimizer(config.optim, 10, cfg.param_dtype)
one = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
host_state = jax.device_get(init_train_state(cfg, optimizer, one, seed=0)[0])
rng = np.random.default_rng(0)
sft_host = sft_batch({"tokens": rng.integers(2, vocab, (8, 16)).astype(np.int32),
                      "positions": np.broadcast_to(np.arange(16, dtype=np.int32), (8, 16)).copy(),
                      "loss_mask": (rng.random((8, 16)) < 0.7).astype(np.float32)})
rl_host = rollout_batch([[3, 4, 5], [6, 7]], 4, rng.integers(2, vocab, (8, 4)).astype(np.int32),
                        np.array([4, 3, 2, 4, 1, 4, 3, 2]), np.zeros((8, 4), np.float32), eos_id=1, pad_id=0, width=12)
rl_host = rl_host.replace(advantages=rng.normal(size=8).astype(np.float32))
prompts = [list(rng.integers(2, vocab, n)) for n in (3, 5, 2, 7, 4, 6)]

teacher_dir = os.path.join(out_dir, "teacher")  # a saved micro run: the frozen teacher every mesh loads
teacher_cfg = models.model_config("micro", vocab_size=vocab, num_layers=1)
teacher_state, _ = init_train_state(teacher_cfg, make_optimizer(config.optim, 10, teacher_cfg.param_dtype), one, seed=5)
checkpoints = Checkpoints(os.path.join(teacher_dir, "checkpoints"))
checkpoints.save(1, teacher_state, run_record(teacher_cfg, vocab))
checkpoints.close()


def train(mesh, make_step, batch, terms, frozen=None):  # 2 steps: the state, each step's terms, loss, grad norm
  shardings = state_shardings(cfg, optimizer, mesh)
  state, step = jax.device_put(host_state, shardings), make_step(shardings)
  metrics = {name: [] for name in ("loss", "grad_norm", *terms)}
  for _ in range(2):
    state, got = step(state, put_batch(batch, mesh), frozen or {})
    for name in metrics:
      metrics[name].append(float(got[name]))
  return state, metrics


facts = {}
for name, (data, fsdp, tensor) in meshes.items():
  mesh = sharding.make_mesh(data, fsdp, tensor, devices=jax.devices()[:data * fsdp * tensor])
  model = models.Decoder(cfg)
  teacher = load_frozen(teacher_dir, mesh, vocab_size=vocab, what="config.distill.teacher")
  sft_step = lambda sh: make_sft_step(model, optimizer, sh, mesh, config, ("nll", "kd"), {"teacher": teacher.model},
                                      {"teacher": teacher.shardings}, vocab)
  sft_state, sft = train(mesh, sft_step, sft_host, ("kd",), {"teacher": teacher.params})  # loss = nll + kd / 2
  rl_parts = Parts(model, shared_prompt=(4, 8), loss_cfg=PolicyLossConfig())
  rl_step = lambda sh: make_train_step(make_objective(None, rl_parts, ["policy"]), optimizer, sh, mesh)
  rl_state, rl = train(mesh, rl_step, rl_host, ("entropy",))
  sampler = Sampler(cfg, eos_id=-1, pad_id=0, mesh=mesh, batch_buckets=(8, 16))  # no eos: every row runs 6 tokens
  samples = sampler(sft_state["params"], prompts, max_new_tokens=6, strategy=Greedy())
  flat = lambda params: np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)])
  np.savez(os.path.join(out_dir, name + ".npz"), **{f"sft_{k}": v for k, v in sft.items()},
           **{f"rl_{k}": v for k, v in rl.items()}, sft_params=flat(sft_state["params"]),
           rl_params=flat(rl_state["params"]), tokens=samples.tokens, model_logprobs=samples.model_logprobs)
  gate = sft_state["params"]["layers_0"]["mlp"]["gate"]["kernel"]
  mu = sft_state["opt_state"][1][0].mu["layers_0"]["mlp"]["gate"]["kernel"]  # chain(clip, adamw(scale_by_adam, ..))
  teacher_gate = teacher.params["layers_0"]["mlp"]["gate"]["kernel"]
  shard_fraction = lambda x: x.addressable_shards[0].data.size / x.size
  spec = lambda s: [list(a) if isinstance(a, tuple) else a for a in s.spec]
  estimate = memory.estimate_memory(cfg, batch_size=8, seq_len=16, mesh=dict(data=data, fsdp=fsdp, tensor=tensor))
  facts[name] = {"gate_spec": spec(gate.sharding), "gate_shard": shard_fraction(gate), "mu_shard": shard_fraction(mu),
                 "teacher_gate_spec": spec(teacher_gate.sharding), "teacher_gate_shard": shard_fraction(teacher_gate),
                 "decode_gate_spec": spec(sampler.param_shardings["layers_0"]["mlp"]["gate"]["kernel"]),
                 "batch_spec": spec(sharding.batch_sharding(mesh)),
                 "state_bytes": sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(sft_state)),
                 "estimated_state_bytes": estimate["params"] + estimate["master"] + estimate["optimizer"]}

# build_mesh: the global batch must split over data x fsdp, and the error names the keys.
config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, 2, 2
assert dict(build_mesh(config, 8).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
try:
  build_mesh(config, 6)
  facts["batch_error"] = ""
except ConfigError as e:
  facts["batch_error"] = str(e)
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
  out = tmp_path_factory.mktemp("mesh_parallel")
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(out), json.dumps(MESHES), str(VOCAB)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  facts = json.loads(result.stdout.strip().splitlines()[-1])
  return {name: dict(np.load(out / f"{name}.npz")) for name in MESHES}, facts


@pytest.mark.parametrize("mesh", [name for name in MESHES if name != "one"])
def test_every_mesh_trains_and_samples_as_one_device(parallel, mesh):
  runs, _ = parallel
  one, got = runs["one"], runs[mesh]
  for key in ("sft_loss", "sft_kd", "rl_entropy", "rl_grad_norm"):  # the steps move what is compared
    assert one[key][1] != one[key][0] and one[key][0] > 0, key
  for key in ("sft_loss", "sft_kd", "sft_grad_norm", "rl_loss", "rl_entropy", "rl_grad_norm"):
    np.testing.assert_allclose(got[key], one[key], atol=1e-5, rtol=1e-5, err_msg=f"{key} on {mesh}")
  for key in ("sft_params", "rl_params"):
    np.testing.assert_allclose(got[key], one[key], atol=5e-5, err_msg=f"{key} on {mesh}")  # 5% of lr
  assert len(np.unique(one["tokens"])) > 3  # greedy picks that depend on the params, not one repeated token
  np.testing.assert_array_equal(got["tokens"], one["tokens"])
  np.testing.assert_allclose(got["model_logprobs"], one["model_logprobs"], atol=1e-5)


def test_params_moments_and_the_teacher_are_split_as_rr_train_memory_counts_and_decoding_gathers_fsdp(parallel):
  _, facts = parallel
  both = facts["fsdp4_tensor2"]
  # The MLP gate kernel (embed, mlp): embed over fsdp, mlp over tensor, so each device holds an eighth; so do
  # its AdamW moment and the frozen teacher's kernel.
  assert both["gate_spec"] == both["teacher_gate_spec"] == ["fsdp", "tensor"]
  assert both["gate_shard"] == both["mu_shard"] == both["teacher_gate_shard"] == 1 / 8
  assert both["decode_gate_spec"] == [None, "tensor"]  # decoding: fsdp gathered, tensor kept
  assert both["batch_spec"] == [["data", "fsdp"]]
  assert facts["fsdp8"]["gate_shard"] == 1 / 8 and facts["data4_tensor2"]["gate_shard"] == 1 / 2
  assert facts["data8"]["gate_shard"] == 1.0
  for name, mesh in facts.items():  # rr.train.memory's per-device state, up to the int32 step counters
    if name in MESHES:
      assert 0 <= mesh["state_bytes"] - mesh["estimated_state_bytes"] <= 12, (name, mesh)
  assert facts["fsdp4_tensor2"]["state_bytes"] < facts["data4_tensor2"]["state_bytes"] / 3
  error = facts["batch_error"]
  assert "config.train.batch_size=6" in error and "config.mesh.data=2 x config.mesh.fsdp=2" in error, error
