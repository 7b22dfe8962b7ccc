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
