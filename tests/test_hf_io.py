"""Hugging Face directories in: rr.models.from_hf against transformers' own model, and rr.eval on one."""

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from rr import models
from rr.data import CharTokenizer
from rr.eval.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
VOCAB = CharTokenizer().vocab_size  # so configs/sft.py's tokenizer can drive the HF model in rr.eval


def save_tiny(path, family: str):
  """family: qwen2 (tied, as Qwen2.5-0.5B), qwen3 and llama (untied), or any of them with "-untied" / "-tied"."""
  torch.manual_seed(0)
  family, _, tying = family.partition("-")
  tied = tying == "tied" if tying else family == "qwen2"
  common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, rope_theta=1000.0, rms_norm_eps=1e-6,
                max_position_embeddings=128, tie_word_embeddings=tied)
  if family == "qwen2":
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common))
  elif family == "llama":
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common))
  else:
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common, head_dim=16))
  model.save_pretrained(path, safe_serialization=True)
  return model.eval()


@pytest.mark.parametrize("family", ["qwen2", "qwen2-untied", "qwen3", "qwen3-tied", "llama", "llama-tied"])
def test_from_hf_gives_the_logits_of_the_transformers_model(tmp_path, family):
  hf = save_tiny(tmp_path / family, family)
  with torch.no_grad():  # make biases and norm scales non-trivial, so a mis-mapped one shows
    for p in hf.parameters():
      p.add_(0.05 * torch.randn_like(p))
  hf.save_pretrained(tmp_path / family, safe_serialization=True)
  cfg, params = models.from_hf(str(tmp_path / family))
  base = family.partition("-")[0]
  assert cfg.qkv_bias == (base == "qwen2") and cfg.qk_norm == (base == "qwen3")
  assert cfg.tie_embeddings == ("lm_head" not in params) == hf.config.tie_word_embeddings
  tokens = np.random.default_rng(0).integers(0, VOCAB, (2, 9))
  with torch.no_grad():
    want = hf(torch.tensor(tokens)).logits.numpy()
  got = models.forward(cfg, params, jnp.asarray(tokens, jnp.int32))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)


def test_from_hf_names_what_it_cannot_read(tmp_path):
  save_tiny(tmp_path / "m", "qwen2")
  config = json.loads((tmp_path / "m" / "config.json").read_text())
  (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "intermediate_size": 40}))
  with pytest.raises(models.HFCheckpointError, match="'model.layers.0.mlp.gate_proj.weight' has shape"):
    models.from_hf(str(tmp_path / "m"))
  (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
  with pytest.raises(models.HFCheckpointError, match="model_type='gpt2' is not supported"):
    models.from_hf(str(tmp_path / "m"))
  from safetensors.numpy import load_file, save_file
  tensors = load_file(tmp_path / "m" / "model.safetensors")
  del tensors["model.layers.1.self_attn.k_proj.bias"]
  save_file(tensors, tmp_path / "m" / "model.safetensors")
  (tmp_path / "m" / "config.json").write_text(json.dumps(config))
  with pytest.raises(models.HFCheckpointError, match="'model.layers.1.self_attn.k_proj.bias' is missing"):
    models.from_hf(str(tmp_path / "m"))
  os.remove(tmp_path / "m" / "model.safetensors")
  (tmp_path / "m" / "config.json").write_text(json.dumps(config))
  with pytest.raises(models.HFCheckpointError, match="has no model.safetensors"):
    models.from_hf(str(tmp_path / "m"))


def test_rr_eval_reads_a_hugging_face_directory(tmp_path):
  save_tiny(tmp_path / "hf", "qwen2")
  out = tmp_path / "eval"
  config = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"
  assert main(["--checkpoint", str(tmp_path / "hf"), "--config", config, "--samples", "2", "--k", "1,2",
               "--num-examples", "4", "--out", str(out)]) == 0
  result = json.loads((out / "eval.json").read_text())
  assert result["step"] is None and result["checkpoint"] == str(tmp_path / "hf")
  assert result["num_examples"] == 4 and 0.0 <= result["pass@2"] <= 1.0


@pytest.mark.parametrize("family, cfg", [
    ("qwen2", models.ModelConfig(VOCAB, 32, 48, 2, 4, 2, qkv_bias=True, rope_theta=1000.0)),
    ("qwen3", models.ModelConfig(VOCAB, 32, 48, 2, 4, 2, head_dim=12, qk_norm=True, tie_embeddings=False)),
    ("llama", models.ModelConfig(VOCAB, 32, 48, 2, 4, 2, tie_embeddings=False, rms_norm_eps=1e-5)),
])
def test_to_hf_writes_what_transformers_loads_and_from_hf_reads_back_exactly(tmp_path, family, cfg):
  import jax
  params = jax.tree.map(np.asarray, models.init_params(cfg, jax.random.key(3)))
  # Random norms and biases (init makes them 1 and 0), so a mis-mapped one cannot hide.
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 * rng.standard_normal(x.shape).astype(np.float32)
      if any(getattr(k, "key", None) in ("scale", "bias") for k in path) else x, params)
  models.to_hf(cfg, params, str(tmp_path / "out"))
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
  assert type(hf).__name__.lower().startswith(family)
  tokens = rng.integers(0, VOCAB, (2, 9))
  with torch.no_grad():
    want = hf(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(models.forward(cfg, params, jnp.asarray(tokens, jnp.int32))), want,
                             atol=1e-4, rtol=1e-4)
  back_cfg, back = models.from_hf(str(tmp_path / "out"))
  assert back_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, back, params)
  with pytest.raises(models.HFCheckpointError, match="already holds a model"):
    models.to_hf(cfg, params, str(tmp_path / "out"))


def test_convert_round_trips_hf_to_rr_to_hf_exactly_and_refuses_to_overwrite(tmp_path, capsys):
  from safetensors.numpy import load_file

  from rr.convert import main as convert
  save_tiny(tmp_path / "hf", "qwen3")
  assert convert(["--from-hf", str(tmp_path / "hf"), "--to", str(tmp_path / "run")]) == 0
  assert os.listdir(tmp_path / "run" / "checkpoints") == ["0"]
  assert convert(["--from", str(tmp_path / "run"), "--to-hf", str(tmp_path / "back")]) == 0
  before, after = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
  assert sorted(before) == sorted(after)
  for name in before:
    np.testing.assert_array_equal(after[name], before[name], err_msg=name)
  # --dtype bfloat16 writes the bf16 rounding of the same weights, and a bf16 HF model goes HF -> rr -> HF exactly.
  import ml_dtypes
  assert convert(["--from", str(tmp_path / "run"), "--to-hf", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
  bf16 = load_file(tmp_path / "bf16" / "model.safetensors")
  for name in before:
    np.testing.assert_array_equal(bf16[name], before[name].astype(ml_dtypes.bfloat16), err_msg=name)
  assert convert(["--from-hf", str(tmp_path / "bf16"), "--to", str(tmp_path / "run16")]) == 0
  assert convert(["--from", str(tmp_path / "run16"), "--to-hf", str(tmp_path / "bf16-back"),
                  "--dtype", "bfloat16"]) == 0
  bf16_back = load_file(tmp_path / "bf16-back" / "model.safetensors")
  assert sorted(bf16_back) == sorted(bf16)
  for name in bf16:
    assert bf16_back[name].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(bf16_back[name], bf16[name], err_msg=name)
  # The converted checkpoint is a real rr checkpoint: rr.eval reads it like a run's.
  config = os.path.join(ROOT, "configs", "sft.py") + ":runlocal"
  assert main(["--checkpoint", str(tmp_path / "run"), "--config", config, "--samples", "1", "--k", "1",
               "--num-examples", "2"]) == 0
  assert json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())["step"] == 0
  capsys.readouterr()
  assert convert(["--from-hf", str(tmp_path / "hf"), "--to", str(tmp_path / "run")]) == 2
  assert "already holds rr checkpoints" in capsys.readouterr().err
  assert convert(["--from", str(tmp_path / "run"), "--to-hf", str(tmp_path / "back")]) == 2
  assert "already holds a model" in capsys.readouterr().err
  assert convert(["--from", str(tmp_path / "nope"), "--to-hf", str(tmp_path / "x")]) == 2
  assert "holds no rr checkpoints" in capsys.readouterr().err
  assert convert(["--from-hf", str(tmp_path / "hf")]) == 2
  assert "pass either" in capsys.readouterr().err
  assert convert(["--from-hf", str(tmp_path / "hf"), "--to", str(tmp_path / "new"), "--dtype", "bfloat16"]) == 2
  assert "--dtype applies to --to-hf only" in capsys.readouterr().err


def perturbed(model):
  """Random offsets on every weight (norm scales and biases included), so a mis-mapped one shows."""
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model.eval()


def test_llama3_rope_scaling_matches_transformers_and_round_trips(tmp_path):
  from rr.models.rope import inverse_frequencies
  torch.manual_seed(1)
  head_dim, theta, original, factor = 16, 10000.0, 64, 8.0
  hf = perturbed(transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
      num_key_value_heads=1, head_dim=head_dim, max_position_embeddings=512, tie_word_embeddings=False,
      rope_parameters={"rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": original})))
  hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
  # All three bands of Llama 3.1's scaling are populated: wavelengths below original / 4 kept, above original
  # divided by the factor, in between interpolated.
  wavelen = 2 * np.pi * theta ** (np.arange(head_dim // 2) * 2 / head_dim)
  kept, divided = wavelen < original / 4, wavelen > original
  assert kept.sum() and divided.sum() and (~kept & ~divided).sum()

  cfg, params = models.from_hf(str(tmp_path / "hf"))
  assert (cfg.rope_type, cfg.rope_factor, cfg.rope_original_max_positions) == ("llama3", factor, original)
  inv_freq = np.asarray(inverse_frequencies(cfg))
  np.testing.assert_allclose(inv_freq[kept], 1 / (theta ** (np.arange(head_dim // 2) * 2 / head_dim))[kept],
                             rtol=1e-6)
  np.testing.assert_allclose(inv_freq, hf.model.rotary_emb.inv_freq.numpy(), rtol=1e-6)
  tokens = np.random.default_rng(0).integers(0, VOCAB, (2, 3 * original // 2))  # past the pre-training length
  with torch.no_grad():
    want = hf(torch.tensor(tokens)).logits.numpy()
  got = np.asarray(models.forward(cfg, params, tokens))
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
  unscaled = np.asarray(models.forward(dataclasses.replace(cfg, rope_type="default"), params, tokens))
  assert np.abs(unscaled - want).max() > 1e-2

  # rr -> HF writes the scaling so that transformers builds the same model, and rr reads it back unchanged.
  models.to_hf(cfg, params, str(tmp_path / "back"))
  back = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "back")).eval()
  assert back.config.rope_parameters["rope_type"] == "llama3"
  with torch.no_grad():
    np.testing.assert_allclose(back(torch.tensor(tokens)).logits.numpy(), want, atol=1e-4, rtol=1e-4)
  assert models.from_hf(str(tmp_path / "back"))[0] == cfg


def test_config_from_hf_reads_older_rope_scaling_and_names_unsupported_rope_types():
  from rr.models.hf_io import config_from_hf
  base = dict(model_type="llama", vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
  new = config_from_hf({**base, "rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 256}})
  old = config_from_hf({**base, "rope_theta": 5e5, "rope_scaling": {
      "type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 256}})
  assert new == old and (new.rope_type, new.rope_theta, new.rope_original_max_positions) == ("llama3", 5e5, 256)
  # No original length in the scaling: transformers falls back to max_position_embeddings, so does rr.
  assert config_from_hf({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0}}).rope_original_max_positions == 1024
  with pytest.raises(models.HFCheckpointError, match="rope type 'yarn' is not supported"):
    config_from_hf({**base, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
  with pytest.raises(models.HFCheckpointError, match="no 'high_freq_factor'"):
    config_from_hf({**base, "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0}})


# Loads a HF directory onto a data=4 x tensor=2 mesh of forced CPU devices and checks it against the plain load.
MESH_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from rr import models, sharding

mesh = sharding.make_mesh(data=4, tensor=2)
out = {}
for path in sys.argv[1:]:
  cfg, plain = models.from_hf(path)
  shardings = sharding.logical_to_shardings(models.param_logical_axes(cfg), mesh)
  placed_cfg, placed = models.from_hf(path, shardings=shardings)
  assert placed_cfg == cfg
  split = 0
  for want, got, sharding_ in zip(jax.tree.leaves(plain), jax.tree.leaves(placed), jax.tree.leaves(shardings)):
    assert isinstance(got, jax.Array) and got.sharding.is_equivalent_to(sharding_, got.ndim), (got.sharding, sharding_)
    np.testing.assert_array_equal(np.asarray(got), want)
    split += got.addressable_shards[0].data.shape != got.shape
  tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (4, 9))
  np.testing.assert_allclose(np.asarray(models.forward(cfg, placed, tokens)),
                             np.asarray(models.forward(cfg, plain, tokens)), atol=1e-5, rtol=1e-5)
  cfg16, placed16 = models.from_hf(path, "bfloat16", shardings)
  assert cfg16.param_dtype == "bfloat16" and {x.dtype for x in jax.tree.leaves(placed16)} == {jnp.dtype("bfloat16")}
  np.testing.assert_array_equal(np.asarray(placed16["embed"]["embedding"], np.float32),
                                np.asarray(plain["embed"]["embedding"].astype(jnp.bfloat16), np.float32))
  out[path] = {"leaves": len(jax.tree.leaves(placed)), "split": int(split)}
print(json.dumps(out))
"""


def test_from_hf_puts_each_tensor_straight_into_its_sharding_on_a_mesh(tmp_path):
  import subprocess
  import sys
  import jax
  qwen2 = perturbed(save_tiny(tmp_path / "qwen2", "qwen2"))
  qwen2.save_pretrained(tmp_path / "qwen2", safe_serialization=True)
  # Qwen3 as a checkpoint split over several files (model.safetensors.index.json), read the same as one file.
  qwen3 = perturbed(save_tiny(tmp_path / "qwen3", "qwen3"))
  qwen3.save_pretrained(tmp_path / "qwen3", safe_serialization=True)
  qwen3.save_pretrained(tmp_path / "qwen3-shards", safe_serialization=True, max_shard_size="40KB")
  assert len(set(json.loads((tmp_path / "qwen3-shards" / "model.safetensors.index.json").read_text())
                 ["weight_map"].values())) > 2
  jax.tree.map(np.testing.assert_array_equal, models.from_hf(str(tmp_path / "qwen3-shards"))[1],
               models.from_hf(str(tmp_path / "qwen3"))[1])
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": ROOT}
  paths = [str(tmp_path / "qwen2"), str(tmp_path / "qwen3-shards")]
  result = subprocess.run([sys.executable, "-c", MESH_SCRIPT, *paths], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  for path in paths:  # the tensor axis really splits params (vocab, heads, mlp), not only replicates them
    assert report[path]["split"] >= 6, report


def test_bfloat16_export_loads_in_transformers_and_reads_back_as_the_rounded_params(tmp_path):
  import jax
  import ml_dtypes
  from safetensors import safe_open
  cfg = models.ModelConfig(VOCAB, 32, 48, 2, 4, 2, qkv_bias=True, tie_embeddings=False, rope_theta=1000.0)
  rng = np.random.default_rng(0)
  # Weights large enough that every tensor moves the logits (a mis-mapped one shifts them by 7% or more,
  # measured, against bf16's 1-2%); norm scales near 1.
  params = jax.tree_util.tree_map_with_path(
      lambda path, a: (("scale" in jax.tree_util.keystr(path)) + 0.3 * rng.standard_normal(a.shape)).astype(np.float32),
      jax.eval_shape(lambda k: models.init_params(cfg, k), jax.random.key(0)))
  params = jax.tree.map(jnp.asarray, params)  # jax arrays in, as a trainer holds them
  models.to_hf(cfg, params, str(tmp_path / "bf16"), dtype="bfloat16")
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
  with safe_open(tmp_path / "bf16" / "model.safetensors", framework="numpy") as f:
    assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
  rounded = jax.tree.map(lambda a: np.asarray(a).astype(ml_dtypes.bfloat16).astype(np.float32), params)
  assert any(not np.array_equal(r, np.asarray(p)) for r, p in zip(jax.tree.leaves(rounded), jax.tree.leaves(params)))
  # rr reads back exactly the bf16 rounding of its params.
  back_cfg, back = models.from_hf(str(tmp_path / "bf16"))
  assert back_cfg == cfg
  jax.tree.map(np.testing.assert_array_equal, back, rounded)

  tokens = rng.integers(0, VOCAB, (2, 9))
  want = np.asarray(models.forward(cfg, rounded, tokens))  # float32 compute on the rounded params
  scale = np.abs(want).max()
  hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "bf16"), dtype=torch.bfloat16).eval()
  assert {p.dtype for p in hf.parameters()} == {torch.bfloat16}
  with torch.no_grad():
    hf_logits = hf(torch.tensor(tokens)).logits.float().numpy()
  assert np.abs(hf_logits - want).max() < 0.04 * scale
  # rr's own bf16 path (notebooks: from_hf(path, "bfloat16") then forward) lands as close.
  cfg16, params16 = models.from_hf(str(tmp_path / "bf16"), "bfloat16")
  assert cfg16.dtype == "bfloat16" and {a.dtype for a in jax.tree.leaves(params16)} == {np.dtype(ml_dtypes.bfloat16)}
  logits16 = models.forward(cfg16, params16, tokens)
  assert logits16.dtype == jnp.float32 and np.abs(np.asarray(logits16) - want).max() < 0.04 * scale
