"""Layers of rr, two senses.

The code's floors: imports point one way, down the floors of the design notes (../shared/design/ARCHITECTURE.md):
a lower floor never imports a higher one, not even inside a function, so e.g. rr.train.memory cannot reach for
rr.main's command line and rr.eval cannot reach into rr.train. Read from the source with `ast`.

The model's layers (rr/models/layers.py): the attention core's implementations (ModelConfig.attention) against a
numpy grouped-query attention; the cuDNN kernel itself runs only on a GPU (benchmarks/gpu_all.sh checks it there).
"""

import ast
import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr.config import ConfigError, base_config
from rr.losses import completion_nll
from rr.models import Decoder, init_cache, init_params, model_config
from rr.models.config import on_cuda
from rr.models.layers import attention_implementation, fused_attention, grouped_query_attention
from rr.train.setup import build_model_config

RR = pathlib.Path(__file__).resolve().parent.parent / "rr"
# Higher number = higher floor. Entry points sit on top; modules on one floor may import each other.
FLOORS = {"main": 6, "convert": 6, "experiment": 6, "train": 5, "eval": 4, "sampler": 3, "rewards": 2, "data": 2, "models": 1,
          "tasks": 1, "losses": 1, "config": 1, "cli": 1, "sharding": 1, "checkpoint": 1, "registry": 1, "files": 0,
          "errors": 0}


def _part(module: str) -> str:
  return module.split(".")[1]


def _imports(path: pathlib.Path) -> set[str]:
  """Every rr.* module the file imports, at any depth of the file (function-level imports included)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith("rr.")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "rr":
        found |= {f"rr.{alias.name}" for alias in node.names}
      elif node.module.startswith("rr."):
        found.add(node.module)
  return found


def _modules():
  for path in sorted(RR.rglob("*.py")):
    parts = path.relative_to(RR.parent).with_suffix("").parts
    if len(parts) > 1 and parts[1] != "__init__":  # rr/__init__.py only loads parts lazily
      yield ".".join(parts), path


def test_every_part_has_a_floor():
  assert {_part(name) for name, _ in _modules()} <= set(FLOORS), "add the new part of rr to FLOORS"


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_no_import_goes_up_a_floor(name, path):
  here = FLOORS[_part(name)]
  upward = sorted(m for m in _imports(path) if _part(m) in FLOORS and FLOORS[_part(m)] > here)
  assert not upward, f"{name} (floor {here}) imports {upward} from a higher floor"


# ------------------------------------------------------------------------------------ the attention core

def numpy_attention(q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH, mask_BxTxS):
  """float64 softmax(q k / sqrt(H)) v per query head over its visible keys; query head h reads kv head h // G."""
  q, k, v = (np.asarray(a, np.float64) for a in (q_BxTxNxH, k_BxSxKVxH, v_BxSxKVxH))
  B, T, N, H = q.shape
  group = N // k.shape[2]
  out = np.zeros_like(q)
  for b in range(B):
    for t in range(T):
      visible = np.flatnonzero(mask_BxTxS[b, t])
      for h in range(N if len(visible) else 0):  # a padding query sees no key; its output is never read
        scores = k[b, visible, h // group] @ q[b, t, h] / np.sqrt(H)
        weights = np.exp(scores - scores.max())
        out[b, t, h] = (weights / weights.sum()) @ v[b, visible, h // group]
  return out


def attention_inputs(T, S, seed=0):
  """q, k, v of 2 rows, 4 query heads over 2 kv heads, Dh 8, and the decoder's visibility mask for T queries
  at the last T of S key slots: row 0 right-padded (its last 2 slots are padding), row 1 left-padded by 3."""
  rng = np.random.default_rng(seed)
  q, k, v = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in ((2, T, 4, 8), (2, S, 2, 8), (2, S, 2, 8)))
  key_pos = np.array([list(range(S - 2)) + [-1, -1], [-1] * 3 + list(range(S - 3))])
  query_pos = key_pos[:, S - T:]
  mask = (key_pos[:, None, :] >= 0) & (key_pos[:, None, :] <= query_pos[:, :, None])
  return q, k, v, mask, query_pos >= 0


@pytest.mark.parametrize("T,S", [(9, 9), (3, 9)], ids=["no_cache", "cached"])
def test_both_attention_paths_equal_numpy_gqa(T, S):
  """The einsum path, and the fused call's layouts, GQA and mask (jax's xla implementation of the very call that
  runs cuDNN on a GPU), against numpy at every real query; is_causal only where the keys are the call's tokens."""
  q, k, v, mask, real = attention_inputs(T, S)
  expected = numpy_attention(q, k, v, mask)
  einsum = np.asarray(grouped_query_attention(q, k, v, jnp.asarray(mask))).reshape(expected.shape)
  fused = np.asarray(fused_attention(q, k, v, jnp.asarray(mask), causal=T == S, implementation="xla"))
  assert fused.shape == expected.shape
  np.testing.assert_allclose(einsum[real], expected[real], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fused[real], expected[real], rtol=1e-5, atol=1e-6)


def test_auto_attention_is_xla_on_cpu_and_cudnn_is_refused_before_work():
  cfg = model_config("nano", 32, dtype="bfloat16")
  assert cfg.attention == "auto" and jax.default_backend() == "cpu"
  assert "NVIDIA GPU" in cfg.why_not_cudnn
  assert attention_implementation(cfg, 64, 64) == "xla"
  assert attention_implementation(dataclasses.replace(cfg, attention="xla"), 64, 64) == "xla"
  config = base_config()
  config.model.preset, config.model.attention = "nano", "cudnn"
  with pytest.raises(ConfigError, match="config.model: attention='cudnn' needs an NVIDIA GPU"):
    build_model_config(config, 32)
  with pytest.raises(ValueError, match="attention='flash'; choose one of"):
    dataclasses.replace(cfg, attention="flash")


def test_attention_is_a_runtime_field_and_xla_gives_the_auto_logits_on_cpu():
  auto = model_config("nano", 32)
  xla = dataclasses.replace(auto, attention="xla")
  assert "attention" in auto.RUNTIME_FIELDS and xla.architecture() == auto.architecture()
  params = init_params(auto, jax.random.key(0))
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 32, (2, 8)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(8, dtype=jnp.int32), (2, 8))
  logits = {name: np.asarray(Decoder(cfg).apply({"params": params}, tokens, positions)[0])
            for name, cfg in (("auto", auto), ("xla", xla))}
  np.testing.assert_array_equal(logits["xla"], logits["auto"])


@pytest.mark.skipif(not on_cuda(), reason="cuDNN's fused attention needs an NVIDIA GPU (benchmarks/gpu_all.sh)")
def test_cudnn_attention_gives_the_xla_loss_gradients_and_cached_logits_on_gpu():
  """bf16, GQA, head_dim 16: a training loss with a right-padded row (mask + is_causal) in value and gradient, and
  a prefill of 16 left-padded prompt slots into a 32-slot cache (mask alone), cuDNN against the einsum path."""
  xla = model_config("nano", 64, hidden_size=64, num_heads=4, num_kv_heads=2, dtype="bfloat16", attention="xla")
  cudnn = dataclasses.replace(xla, attention="cudnn")
  assert attention_implementation(cudnn, 32, 32) == "cudnn" and attention_implementation(cudnn, 1, 32) == "xla"
  params = init_params(xla, jax.random.key(0))
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, 64, (2, 32)), jnp.int32)
  positions = np.broadcast_to(np.arange(32, dtype=np.int32), (2, 32)).copy()
  positions[1, 27:] = -1
  loss_mask = jnp.asarray((positions >= 0) & (np.arange(32) < 31), jnp.float32)

  def loss(cfg):
    return lambda p: completion_nll(Decoder(cfg).apply({"params": p}, tokens, jnp.asarray(positions))[0], tokens,
                                    loss_mask)[0]

  def prefill(cfg):
    prompt_positions = jnp.asarray(np.maximum(np.arange(16) - np.array([[0], [5]]), -1), jnp.int32)
    return Decoder(cfg).apply({"params": params}, tokens[:, :16], prompt_positions, init_cache(cfg, 2, 32))[0]

  (want, want_grads), (got, got_grads) = (jax.jit(jax.value_and_grad(loss(cfg)))(params) for cfg in (xla, cudnn))
  np.testing.assert_allclose(got, want, rtol=2e-2)
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got_grads), jax.tree.leaves(want_grads), strict=True):
    g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
    assert np.linalg.norm(g - w) <= 0.05 * np.linalg.norm(w) + 1e-6, jax.tree_util.keystr(path)
  real = np.arange(16) >= np.array([[0], [5]])
  np.testing.assert_allclose(np.asarray(jax.jit(prefill, static_argnums=0)(cudnn))[real],
                             np.asarray(jax.jit(prefill, static_argnums=0)(xla))[real], rtol=5e-2, atol=5e-2)
