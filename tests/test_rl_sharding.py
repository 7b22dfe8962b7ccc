"""The RL step (shared-prompt forward included) on 8 forced CPU devices equals the same step on one device."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Three GRPO steps on a fixed rollout batch of 2 groups x 4 completions, on a (data, model) mesh of the first
# data * model devices; prints each step's grad norm and entropy and a checksum of the final params.
SCRIPT = r"""
import json, sys
import jax, numpy as np
from rr import models, sharding
from rr.config import base_config
from rr.losses import PolicyLossConfig
from rr.train.batch import put_batch, rollout_batch
from rr.train.objectives import Parts, make_objective
from rr.train.optimizer import make_optimizer
from rr.train.state import init_train_state
from rr.train.step import make_train_step

data, model_axis = int(sys.argv[1]), int(sys.argv[2])
cfg = models.model_config("nano", vocab_size=24)
optim = base_config().optim
optim.lr, optim.warmup_steps = 1e-2, 0
optimizer = make_optimizer(optim, 10, cfg.param_dtype)
mesh = sharding.make_mesh(data, model_axis, devices=jax.devices()[:data * model_axis])
state, shardings = init_train_state(cfg, optimizer, mesh, seed=0)
rng = np.random.default_rng(0)
tokens = rng.integers(2, 24, (8, 4)).astype(np.int32)
batch = rollout_batch([[3, 4, 5], [6, 7]], 4, tokens, np.array([4, 3, 2, 4, 1, 4, 3, 2]),
                      np.zeros((8, 4), np.float32), eos_id=1, pad_id=0, width=12)
batch = batch.replace(advantages=rng.normal(size=8).astype(np.float32))
parts = Parts(models.Decoder(cfg), shared_prompt=(4, 8), loss_cfg=PolicyLossConfig())
step = make_train_step(make_objective(None, parts, ["policy"]), optimizer, shardings, mesh)
out = {"grad_norm": [], "entropy": []}
for _ in range(3):
  state, metrics = step(state, put_batch(batch, mesh), {})
  out["grad_norm"].append(float(metrics["grad_norm"]))
  out["entropy"].append(float(metrics["entropy"]))
out["params"] = float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(state["params"])))
print(json.dumps(out))
"""


def run_step(data: int, model: int) -> dict:
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": ROOT}
  result = subprocess.run([sys.executable, "-c", SCRIPT, str(data), str(model)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_rl_step_on_8_devices_matches_one_device():
  one = run_step(1, 1)
  assert one["grad_norm"][0] > 0 and one["grad_norm"] != one["grad_norm"][::-1]  # the steps really move
  for data, model in ((8, 1), (4, 2)):
    sharded = run_step(data, model)
    for key in ("grad_norm", "entropy"):
      np.testing.assert_allclose(sharded[key], one[key], rtol=2e-4, err_msg=f"{key} on data={data}, model={model}")
    np.testing.assert_allclose(sharded["params"], one["params"], rtol=1e-5)
