"""Hugging Face directories in: rr.models.from_hf against transformers' own model, and rr.eval on one."""

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
  torch.manual_seed(0)
  common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, rope_theta=1000.0, rms_norm_eps=1e-6,
                max_position_embeddings=128)
  if family == "qwen2":
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, tie_word_embeddings=True))
  elif family == "llama":
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, tie_word_embeddings=False))
  else:
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**common, head_dim=16, tie_word_embeddings=False))
  model.save_pretrained(path, safe_serialization=True)
  return model.eval()


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama"])
def test_from_hf_gives_the_logits_of_the_transformers_model(tmp_path, family):
  hf = save_tiny(tmp_path / family, family)
  with torch.no_grad():  # make biases and norm scales non-trivial, so a mis-mapped one shows
    for p in hf.parameters():
      p.add_(0.05 * torch.randn_like(p))
  hf.save_pretrained(tmp_path / family, safe_serialization=True)
  cfg, params = models.from_hf(str(tmp_path / family))
  assert cfg.qkv_bias == (family == "qwen2") and cfg.qk_norm == (family == "qwen3")
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
