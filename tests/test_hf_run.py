"""SFT and GRPO from a Hugging Face model directory (configs/hf_sft.py, configs/hf_grpo.py), with its tokenizer's
chat template and special tokens: a tiny directory made here (rr's own to_hf plus a character-level tokenizer
with a Qwen-style chat template), so nothing is downloaded."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rr import models, train
from rr.checkpoint import Checkpoints
from rr.config import ConfigError, apply_overrides, load_config
from rr.data import DataError, SFTBatches, encode_prompts
from rr.data.tokenizers import HFTokenizer, tokenizer_from_config
from rr.convert import main as convert_main
from rr.eval.__main__ import main as eval_main
from rr.tasks import make_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT_CONFIG = os.path.join(ROOT, "configs", "hf_sft.py")
GRPO_CONFIG = os.path.join(ROOT, "configs", "hf_grpo.py")
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TOKENIZER_VOCAB = 261  # 256 bytes and 5 specials
MODEL_VOCAB = 288  # more rows than the tokenizer's ids, as real checkpoints pad their embedding tables


def save_tokenizer(path, chat_template=CHAT_TEMPLATE):
  """A byte-level tokenizer (one id per byte, no merges: the layout Qwen2's tokenizer class rebuilds from, which
  transformers picks for a directory whose config.json says qwen2), with Qwen's specials: eos is the end of turn,
  pad is its own token."""
  import transformers
  from tokenizers import Tokenizer, decoders, pre_tokenizers
  from tokenizers import models as tok_models

  alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
  raw = Tokenizer(tok_models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
  raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  raw.decoder = decoders.ByteLevel()
  tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                             additional_special_tokens=["<|im_start|>"])
  tok.add_tokens(["<think>", "</think>"])
  if chat_template:
    tok.chat_template = chat_template
  tok.save_pretrained(str(path))
  return tok


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  """A Qwen2-shaped model directory (qkv bias, tied embeddings, padded vocab) with its tokenizer files."""
  path = tmp_path_factory.mktemp("hf") / "tiny-qwen2"
  cfg = models.ModelConfig(vocab_size=MODEL_VOCAB, hidden_size=32, intermediate_size=64, num_layers=2,
                           num_heads=4, num_kv_heads=2, qkv_bias=True, tie_embeddings=True, rope_theta=1e4)
  models.to_hf(cfg, jax.device_get(models.init_params(cfg, jax.random.key(1))), str(path))
  save_tokenizer(path)
  return str(path)


def hf_config(spec, hf_dir, *overrides):
  config = load_config(f"{spec}:model={hf_dir},runlocal")
  apply_overrides(config, [("train.eval_every", "0"), ("eval.num_examples", "4"), *overrides])
  return config


def test_prompts_use_the_chat_template_and_completions_end_with_its_eos(hf_dir):
  tok = tokenizer_from_config(hf_config(SFT_CONFIG, hf_dir))  # tokenizer.path "" reads the model directory
  assert tok.chat_template and tok.eos_id == tok.hf.convert_tokens_to_ids("<|im_end|>")
  assert tok.pad_id == tok.hf.convert_tokens_to_ids("<|endoftext|>") != tok.eos_id
  start = tok.hf.convert_tokens_to_ids("<|im_start|>")
  example = make_split("addition", "train", 1, 3, seed=0)[0]
  [prompt] = encode_prompts(tok, [example.question])
  assert tok.decode(prompt) == f"<|im_start|>user\n{example.question}<|im_end|>\n<|im_start|>assistant\n"
  assert prompt[0] == start and prompt.count(start) == 2
  batch = SFTBatches([example], tok, batch_size=1, max_len=96, seed=0).batch(0)
  tokens, mask = batch["tokens"][0], batch["loss_mask"][0].astype(bool)
  length = int((batch["positions"][0] >= 0).sum())
  assert list(tokens[:len(prompt)]) == prompt and tokens[length - 1] == tok.eos_id
  # The loss targets are the completion and its end-of-turn token, never the templated prompt.
  assert tok.decode(tokens[1:][mask[:-1]]) == f"<think>{example.rationale}</think>{example.answer}<|im_end|>"


def test_a_system_prompt_comes_first_and_a_tokenizer_without_template_is_named(tmp_path, hf_dir):
  tok = HFTokenizer.from_dir(hf_dir, chat_template=True, system_prompt="Think step by step.")
  assert tok.chat_prompt("1+1").startswith("<|im_start|>system\nThink step by step.<|im_end|>\n<|im_start|>user")
  save_tokenizer(tmp_path / "plain", chat_template=None)
  with pytest.raises(DataError, match="has no chat template"):
    HFTokenizer.from_dir(str(tmp_path / "plain"), chat_template=True)


def test_sft_then_grpo_from_the_directory(tmp_path, hf_dir):
  sft_dir, rl_dir = str(tmp_path / "sft"), str(tmp_path / "grpo")
  summary = train.run(hf_config(SFT_CONFIG, hf_dir, ("train.steps", "6")), sft_dir)
  assert summary["finished"] and np.isfinite(summary["train/loss"])
  ckpts = Checkpoints(os.path.join(sft_dir, "checkpoints"))
  record = ckpts.read_record(ckpts.latest_step())
  assert record["vocab_size"] == TOKENIZER_VOCAB and record["model"]["vocab_size"] == MODEL_VOCAB  # tokenizer ids < rows
  assert record["model"]["qkv_bias"] and "dtype" not in record["model"]
  # The SFT run started from the directory's weights: 6 steps at lr 1e-3 stay close to them.
  hf_params = models.from_hf(hf_dir)[1]
  sft_params = ckpts.read_params(ckpts.latest_step())
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), sft_params, hf_params)
  assert 0 < max(jax.tree.leaves(moved)) < 0.05

  # GRPO from the SFT run, then rr.eval reads its workdir with the same config (tokenizer from the directory).
  rl = hf_config(GRPO_CONFIG, hf_dir, ("train.steps", "2"), ("init_checkpoint", sft_dir))
  rl_summary = train.run(rl, rl_dir)
  assert rl_summary["finished"] and rl_summary["step"] == 2
  code = eval_main(["--checkpoint", rl_dir, "--config", f"{GRPO_CONFIG}:model={hf_dir},runlocal",
                    "--num-examples", "4", "--k", "1,2", "--samples", "2"])
  assert code == 0
  with open(os.path.join(rl_dir, "eval", "eval.json")) as f:
    assert json.load(f)["num_examples"] == 4

  # Export: bf16 weights plus the run's tokenizer files (chat template included), a directory transformers reads.
  out = str(tmp_path / "export")
  assert convert_main(["--from", rl_dir, "--to-hf", out, "--dtype", "bfloat16"]) == 0
  exported = HFTokenizer.from_dir(out, chat_template=True)
  assert exported.vocab_size == TOKENIZER_VOCAB and exported.chat_prompt("1+1") == tok_chat_prompt(hf_dir, "1+1")
  cfg, params = models.from_hf(out)
  assert cfg.architecture() == models.from_hf(hf_dir)[0].architecture()
  final = Checkpoints(os.path.join(rl_dir, "checkpoints"))
  want = jax.tree.map(lambda x: np.asarray(x, jnp.bfloat16).astype(np.float32), final.read_params(final.latest_step()))
  jax.tree.map(np.testing.assert_array_equal, params, want)


def tok_chat_prompt(path, question):
  return HFTokenizer.from_dir(path, chat_template=True).chat_prompt(question)


def test_convert_from_hf_records_the_directory_tokenizer(tmp_path, hf_dir):
  """A converted checkpoint records the tokenizer's vocabulary, not the padded table's, so a run with that
  tokenizer can start from it."""
  assert convert_main(["--from-hf", hf_dir, "--to", str(tmp_path / "rr")]) == 0
  record = Checkpoints(str(tmp_path / "rr" / "checkpoints")).read_record(0)
  assert record["vocab_size"] == TOKENIZER_VOCAB and record["model"]["vocab_size"] == MODEL_VOCAB
  assert record["tokenizer_dir"] == os.path.abspath(hf_dir)


def test_grpo_starts_from_the_directory_weights(tmp_path, hf_dir):
  """Zero-RL: no init_checkpoint, so the directory's weights are the start; at lr 0 they are also the end."""
  config = hf_config(GRPO_CONFIG, hf_dir, ("train.steps", "1"), ("optim.lr", "0.0"))
  train.run(config, str(tmp_path / "zero"))
  ckpts = Checkpoints(str(tmp_path / "zero" / "checkpoints"))
  jax.tree.map(np.testing.assert_array_equal, ckpts.read_params(ckpts.latest_step()), models.from_hf(hf_dir)[1])


def test_a_tokenizer_larger_than_the_model_is_refused_before_work(tmp_path, hf_dir):
  small = tmp_path / "small"
  cfg = models.ModelConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
                           num_kv_heads=1)
  models.to_hf(cfg, jax.device_get(models.init_params(cfg, jax.random.key(0))), str(small))
  config = hf_config(SFT_CONFIG, str(small), ("tokenizer.path", hf_dir))
  with pytest.raises(ConfigError, match="vocab_size=64 embedding rows, fewer than the tokenizer's 261"):
    train.run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")
