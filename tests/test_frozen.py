"""rr.train.frozen.load_frozen: a reference / teacher model from an rr run or a Hugging Face directory."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rr import models, sharding
from rr.checkpoint import CheckpointError, Checkpoints
from rr.config import ConfigError
from rr.train.frozen import Frozen, load_frozen
from rr.train.state import init_train_state, run_record

VOCAB = 48
STUDENT = models.model_config("nano", vocab_size=VOCAB)
TEACHER = models.model_config("nano", vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_layers=3)


def save_run(workdir, cfg, vocab_size=VOCAB, step=5, seed=0):
  """A run's workdir with one checkpoint of `cfg` (params and an Adam state), as a trainer writes it."""
  mesh = sharding.make_mesh()
  state, _ = init_train_state(cfg, optax.adam(1e-3), mesh, seed)
  ckpts = Checkpoints(os.path.join(workdir, "checkpoints"))
  ckpts.save(step, state, run_record(cfg, vocab_size))
  ckpts.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:  # what a trainer writes beside its checkpoints
    json.dump({"trainer": "sft", "data": {"source": "task"}}, f)
  return jax.tree.map(np.asarray, state["params"])


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher"))
  return workdir, save_run(workdir, TEACHER)


def assert_params(frozen, want, dtype=jnp.float32):
  assert jax.tree.structure(frozen.params) == jax.tree.structure(want)
  for got, w in zip(jax.tree.leaves(frozen.params), jax.tree.leaves(want)):
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(w).astype(dtype))


def assert_on_mesh(frozen, mesh):
  want = sharding.logical_to_shardings(models.param_logical_axes(frozen.model_cfg), mesh)
  assert jax.tree.structure(frozen.shardings) == jax.tree.structure(frozen.params)
  for x, s, w in zip(jax.tree.leaves(frozen.params), jax.tree.leaves(frozen.shardings), jax.tree.leaves(want)):
    assert s == w and x.sharding.is_equivalent_to(w, x.ndim) and x.sharding.mesh == mesh


def test_a_bigger_teacher_than_the_student_loads_from_its_workdir_or_checkpoints_dir(teacher_run):
  workdir, want = teacher_run
  mesh = sharding.make_mesh()
  for path in (workdir, os.path.join(workdir, "checkpoints")):
    frozen = load_frozen(path, mesh, vocab_size=STUDENT.vocab_size, what="config.distil.teacher")
    assert isinstance(frozen, Frozen) and isinstance(frozen.model, models.Decoder)
    assert frozen.model_cfg.architecture() == TEACHER.architecture() != STUDENT.architecture()
    assert_params(frozen, want)
    assert_on_mesh(frozen, mesh)
  tokens = jnp.zeros((2, 5), jnp.int32)
  logits, _ = frozen.model.apply({"params": frozen.params}, tokens, jnp.broadcast_to(jnp.arange(5), (2, 5)))
  assert logits.shape == (2, 5, VOCAB)
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "checkpoints"))  # read-only: nothing created


def test_bfloat16_stores_the_frozen_params_in_bfloat16(teacher_run):
  workdir, want = teacher_run
  frozen = load_frozen(workdir, sharding.make_mesh(), vocab_size=VOCAB, dtype="bfloat16")
  assert frozen.model_cfg.param_dtype == frozen.model_cfg.dtype == "bfloat16"
  assert_params(frozen, want, jnp.bfloat16)


def test_another_vocabulary_stops_before_any_array_is_read(teacher_run, monkeypatch):
  workdir, _ = teacher_run

  def no_read(*args, **kwargs):
    raise AssertionError("params were read before the vocabulary check")

  monkeypatch.setattr(Checkpoints, "read_state", no_read)
  monkeypatch.setattr(Checkpoints, "restore", no_read)
  with pytest.raises(CheckpointError) as e:
    load_frozen(workdir, sharding.make_mesh(), vocab_size=VOCAB + 2)
  message = str(e.value)
  assert "config.rl.reference" in message and workdir in message
  assert f"vocab_size={VOCAB}" in message and f"vocab_size={VOCAB + 2}" in message and "tokenizer" in message


def test_a_hugging_face_directory_loads_with_equal_params_and_its_vocabulary_is_checked(tmp_path):
  cfg = models.model_config("nano", vocab_size=VOCAB + 4, tie_embeddings=False, qkv_bias=True)  # a padded table
  params = jax.tree.map(np.asarray, models.init_params(cfg, jax.random.key(1)))
  models.to_hf(cfg, params, str(tmp_path / "hf"))
  mesh = sharding.make_mesh()
  frozen = load_frozen(str(tmp_path / "hf"), mesh, vocab_size=VOCAB)
  assert frozen.model_cfg.architecture() == cfg.architecture()
  assert_params(frozen, params)
  assert_on_mesh(frozen, mesh)
  assert_params(load_frozen(str(tmp_path / "hf"), mesh, vocab_size=VOCAB, dtype="bfloat16"), params, jnp.bfloat16)
  with pytest.raises(ConfigError, match=rf"config.rl.reference=.*hf.*vocab_size={VOCAB + 4}.*vocab_size={VOCAB + 5}"):
    load_frozen(str(tmp_path / "hf"), mesh, vocab_size=VOCAB + 5)


def test_a_directory_whose_own_tokenizer_is_another_is_refused(tmp_path):
  """More embedding rows than the run's ids pass the row check, but the directory's tokenizer files say which
  tokenizer it was trained with: another vocabulary is refused, the same one loads."""
  from rr.data import HFTokenizer
  from test_tokenizers import build_hf_tokenizer

  path = tmp_path / "hf"
  cfg = models.model_config("nano", vocab_size=320)
  models.to_hf(cfg, jax.tree.map(np.asarray, models.init_params(cfg, jax.random.key(2))), str(path))
  build_hf_tokenizer(path)
  own = HFTokenizer.from_dir(str(path)).vocab_size
  assert own < 320 and own != VOCAB
  with pytest.raises(ConfigError, match=rf"config.distill.teacher=.*comes with a tokenizer of {own} ids.*"
                                        rf"vocab_size={VOCAB}"):
    load_frozen(str(path), sharding.make_mesh(), vocab_size=VOCAB, what="config.distill.teacher")
  assert load_frozen(str(path), sharding.make_mesh(), vocab_size=own).model_cfg.vocab_size == 320


def test_a_path_that_holds_no_model_is_named(tmp_path):
  mesh = sharding.make_mesh()
  with pytest.raises(ConfigError, match=r"config.rl.reference='.*missing' is not a directory"):
    load_frozen(str(tmp_path / "missing"), mesh, vocab_size=VOCAB)
  (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run that never saved
  (tmp_path / "odd").mkdir()
  (tmp_path / "odd" / "notes.txt").write_text("not a model")
  for path in (tmp_path / "run", tmp_path / "run" / "checkpoints", tmp_path / "odd"):
    with pytest.raises(CheckpointError, match=r"config.ref=.* holds no rr checkpoint and is not a Hugging Face"):
      load_frozen(str(path), mesh, vocab_size=VOCAB, what="config.ref")
  (tmp_path / "odd" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
  with pytest.raises(ConfigError, match=r"config.ref=.*odd.*model_type='gpt2' is not supported"):
    load_frozen(str(tmp_path / "odd"), mesh, vocab_size=VOCAB, what="config.ref")
  with pytest.raises(ConfigError, match="dtype='float16'"):
    load_frozen(str(tmp_path / "odd"), mesh, vocab_size=VOCAB, dtype="float16")


SHARDED = """
import sys
import jax, numpy as np
from rr import sharding
from rr.train.frozen import load_frozen
mesh = sharding.make_mesh(data=2, tensor=2)
frozen = load_frozen(sys.argv[1], mesh, vocab_size=int(sys.argv[2]))
want = np.load(sys.argv[3])
for path, x in jax.tree_util.tree_leaves_with_path(frozen.params):
  np.testing.assert_array_equal(np.asarray(x), want[jax.tree_util.keystr(path)])
  assert x.sharding.mesh == mesh
split = [x for x in jax.tree.leaves(frozen.params) if any("tensor" in (a if isinstance(a, tuple) else (a,))
                                                           for a in x.sharding.spec)]
assert split and all(s.data.size * 2 == x.size for x in split for s in x.addressable_shards), "nothing split"
print("ok", len(split))
"""


def test_a_frozen_model_is_split_over_the_mesh_tensor_axis(teacher_run, tmp_path):
  workdir, want = teacher_run
  np.savez(tmp_path / "want.npz", **{jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(want)})
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
  result = subprocess.run([sys.executable, "-c", SHARDED, workdir, str(VOCAB), str(tmp_path / "want.npz")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
