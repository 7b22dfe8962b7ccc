"""Hugging Face checkpoints in and out: a local directory (config.json + safetensors) to rr params and back.

Supported: Qwen2 (qkv bias, tied or untied), Qwen3 (qk-norm, explicit head_dim) and Llama, with default rope
or Llama 3.1's "llama3" rope scaling. Weights are read with safetensors' numpy reader (no torch), one tensor
at a time, and mapped onto rr's tree: HF keeps [out, in] matrices, rr keeps [in, heads, head_dim] /
[heads, head_dim, out] kernels, so every projection is a transpose and a reshape (`to_hf` does the inverse,
from the same table, `hf_layout`). Anything unsupported or missing stops with a message naming it.
"""

import contextlib
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rr.models.config import ModelConfig

SUPPORTED = ("qwen2", "qwen3", "llama")
ROPE_TYPES = ("default", "llama3")
EXPORT_DTYPES = ("float32", "bfloat16")


class HFCheckpointError(ValueError):
  """A Hugging Face directory rr cannot read; the message names the file, field or tensor."""


# --- config.json ----------------------------------------------------------------------------------

def _rope_fields(hf: dict) -> dict:
  """ModelConfig's rope fields from config.json: transformers 5 writes them under "rope_parameters", older
  files use a top-level rope_theta and "rope_scaling" (whose type key was once "type")."""
  rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ROPE_TYPES:
    raise HFCheckpointError(f"config.json rope type {rope_type!r} is not supported; rr reads {ROPE_TYPES}")
  fields = {"rope_type": rope_type, "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))}
  if rope_type == "llama3":
    for key in ("factor", "low_freq_factor", "high_freq_factor"):
      if key not in rope:
        raise HFCheckpointError(f"config.json's llama3 rope scaling has no {key!r}")
    # As transformers: a top-level original_max_position_embeddings wins, max_position_embeddings is the fallback.
    original = (hf.get("original_max_position_embeddings") or rope.get("original_max_position_embeddings")
                or hf.get("max_position_embeddings"))
    if not original:
      raise HFCheckpointError("config.json's llama3 rope scaling has no 'original_max_position_embeddings'")
    fields.update(rope_factor=float(rope["factor"]), rope_low_freq_factor=float(rope["low_freq_factor"]),
                  rope_high_freq_factor=float(rope["high_freq_factor"]),
                  rope_original_max_positions=int(original))
  return fields


def config_from_hf(hf: dict, dtype: str = "float32") -> ModelConfig:
  """rr's ModelConfig from a Hugging Face config.json dict (compute and param dtype `dtype`)."""
  model_type = hf.get("model_type")
  if model_type not in SUPPORTED:
    raise HFCheckpointError(f"config.json model_type={model_type!r} is not supported; rr reads {SUPPORTED}")
  if hf.get("use_sliding_window"):
    raise HFCheckpointError("config.json use_sliding_window=true is not supported; rr attends to every token")
  if hf.get("mlp_bias"):
    raise HFCheckpointError("config.json mlp_bias=true is not supported; rr's MLP has no biases")
  if hf.get("hidden_act", "silu") != "silu":
    raise HFCheckpointError(f"config.json hidden_act={hf['hidden_act']!r} is not supported; rr's MLP is SwiGLU")
  try:
    return ModelConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"], head_dim=hf.get("head_dim"),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        qkv_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
        qk_norm=model_type == "qwen3", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        dtype=dtype, param_dtype=dtype, **_rope_fields(hf))
  except KeyError as e:
    raise HFCheckpointError(f"config.json has no {e.args[0]!r}, which rr needs") from None


def read_config(path: str) -> dict:
  """The directory's config.json as a dict."""
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise HFCheckpointError(f"{path} has no config.json; pass a Hugging Face model directory")
  try:
    with open(config_path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise HFCheckpointError(f"{config_path} is not readable JSON ({e})") from None


def _model_type(cfg: ModelConfig) -> str:
  if cfg.qk_norm:
    return "qwen3"
  return "qwen2" if cfg.qkv_bias else "llama"


def config_to_hf(cfg: ModelConfig, dtype: str | None = None) -> dict:
  """A config.json dict transformers reads back as the same architecture (Qwen3 with qk-norm, Qwen2 with
  qkv bias, Llama otherwise); `dtype` (default cfg.param_dtype) is the weights' dtype it announces."""
  model_type = _model_type(cfg)
  dtype = dtype or cfg.param_dtype
  architectures = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
  rope = {"rope_theta": cfg.rope_theta, "rope_type": cfg.rope_type}
  max_positions = 32768
  if cfg.rope_type == "llama3":
    rope.update(factor=cfg.rope_factor, low_freq_factor=cfg.rope_low_freq_factor,
                high_freq_factor=cfg.rope_high_freq_factor,
                original_max_position_embeddings=cfg.rope_original_max_positions)
    # transformers wants the scaled context longer than the pre-training one.
    max_positions = max(max_positions, int(cfg.rope_original_max_positions * max(cfg.rope_factor, 1.0)))
  hf = {"architectures": [architectures[model_type]], "model_type": model_type, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta, "rope_parameters": rope,
        "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu",
        "dtype": dtype, "torch_dtype": dtype,  # transformers 5 reads "dtype", older versions "torch_dtype"
        "max_position_embeddings": max_positions, "use_sliding_window": False}
  if cfg.head_dim is not None:  # otherwise transformers derives hidden_size // heads, as rr does
    hf["head_dim"] = cfg.head_dim
  if model_type == "llama":
    hf["attention_bias"] = False
  return hf


# --- the tensor map ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class HFTensor:
  """Where one rr param lives in a HF checkpoint: the tensor's name and shape there, and rr's shape. rr's
  array is the HF tensor, transposed when `transpose` (HF's [out, in] -> rr's [in, out]), then reshaped."""
  name: str
  hf_shape: tuple[int, ...]
  rr_shape: tuple[int, ...]
  transpose: bool = False

  def to_rr(self, x: np.ndarray) -> np.ndarray:
    return (x.T if self.transpose else x).reshape(self.rr_shape)

  def to_hf(self, x: np.ndarray) -> np.ndarray:
    if self.transpose:
      return x.reshape(self.hf_shape[::-1]).T
    return x.reshape(self.hf_shape)


def hf_layout(cfg: ModelConfig) -> dict:
  """rr's param tree (same structure as init_params) with an HFTensor at each leaf: the one table both
  directions of the conversion read."""
  N, KV, H, D, F = (cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim, cfg.hidden_size,
                    cfg.intermediate_size)
  same = lambda name, shape: HFTensor(name, shape, shape)  # noqa: E731
  layout = {"embed": {"embedding": same("model.embed_tokens.weight", (cfg.vocab_size, D))},
            "final_norm": {"scale": same("model.norm.weight", (D,))}}
  for i in range(cfg.num_layers):
    pre = f"model.layers.{i}."
    attn = {}
    for name, heads in (("q", N), ("k", KV), ("v", KV)):
      attn[name] = {"kernel": HFTensor(pre + f"self_attn.{name}_proj.weight", (heads * H, D), (D, heads, H),
                                       transpose=True)}
      if cfg.qkv_bias:
        attn[name]["bias"] = HFTensor(pre + f"self_attn.{name}_proj.bias", (heads * H,), (heads, H))
    attn["o"] = {"kernel": HFTensor(pre + "self_attn.o_proj.weight", (D, N * H), (N, H, D), transpose=True)}
    if cfg.qk_norm:
      attn["q_norm"] = {"scale": same(pre + "self_attn.q_norm.weight", (H,))}
      attn["k_norm"] = {"scale": same(pre + "self_attn.k_norm.weight", (H,))}
    mlp = {name: {"kernel": HFTensor(pre + f"mlp.{name}_proj.weight", shape, shape[::-1], transpose=True)}
           for name, shape in (("gate", (F, D)), ("up", (F, D)), ("down", (D, F)))}
    layout[f"layers_{i}"] = {
        "attn": attn,
        "input_norm": {"scale": same(pre + "input_layernorm.weight", (D,))},
        "post_attn_norm": {"scale": same(pre + "post_attention_layernorm.weight", (D,))},
        "mlp": mlp,
    }
  if not cfg.tie_embeddings:
    layout["lm_head"] = {"kernel": HFTensor("lm_head.weight", (cfg.vocab_size, D), (D, cfg.vocab_size),
                                            transpose=True)}
  return layout


def _in_order(layout: dict, params=None):
  """(HFTensor, the matching leaf of `params` or None) in the order the layout lists them (layer by layer,
  not jax's sorted order); `params` is indexed by key, so any mapping of rr's tree will do."""
  for key, value in layout.items():
    leaf = None if params is None else params[key]
    if isinstance(value, dict):
      yield from _in_order(value, leaf)
    else:
      yield value, leaf


def _check_shape(t: HFTensor, shape) -> None:
  if shape is None:
    raise HFCheckpointError(f"tensor {t.name!r} is missing from the checkpoint")
  if tuple(shape) != t.hf_shape:
    raise HFCheckpointError(f"tensor {t.name!r} has shape {tuple(shape)}; the config says {t.hf_shape}")


def params_from_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig, dtype: str = "float32") -> dict:
  """rr's param tree (numpy, `dtype`) from a dict of HF tensors; names the first missing or mis-shaped one."""
  layout = hf_layout(cfg)
  for t, _ in _in_order(layout):
    _check_shape(t, np.shape(tensors[t.name]) if t.name in tensors else None)
  return jax.tree.map(lambda t: np.asarray(t.to_rr(np.asarray(tensors[t.name])), jnp.dtype(dtype)), layout)


# --- reading ----------------------------------------------------------------------------------------

class _SafetensorsDir:
  """The safetensors files of a HF directory, open for reading one tensor (or one header entry) at a time."""

  def __init__(self, path: str, stack: contextlib.ExitStack):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
      with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
      weight_map = None
    else:
      raise HFCheckpointError(f"{path} has no model.safetensors (or model.safetensors.index.json); rr reads "
                              "safetensors only: save with save_pretrained(..., safe_serialization=True)")
    files = sorted(set(weight_map.values())) if weight_map else ["model.safetensors"]
    handles = {name: stack.enter_context(safe_open(os.path.join(path, name), framework="numpy"))
               for name in files}
    if weight_map is None:
      weight_map = {key: "model.safetensors" for key in handles["model.safetensors"].keys()}
    self._handle = {key: handles[name] for key, name in weight_map.items()}

  def shape(self, name: str):
    """The tensor's shape from its file's header (no data read), None when it is not there."""
    handle = self._handle.get(name)
    return None if handle is None else tuple(handle.get_slice(name).get_shape())

  def read(self, name: str) -> np.ndarray:
    return self._handle[name].get_tensor(name)


def _place(t: HFTensor, files: _SafetensorsDir, dtype, sharding):
  """One param: read, laid out for rr, cast, and (with a sharding) put on its devices; the host copy is
  dropped on return, so loading holds about one tensor on the host beyond what is already placed."""
  host = np.asarray(t.to_rr(files.read(t.name)), dtype)
  if sharding is None:
    return host
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def from_hf(path: str, dtype: str = "float32", shardings=None) -> tuple[ModelConfig, dict]:
  """(model_config, params) from a local Hugging Face model directory, params cast to `dtype` (the config's
  dtype and param_dtype too).

  Without `shardings` the params are numpy arrays. With them (a pytree of jax.sharding.Sharding with the
  params' structure, e.g. rr.sharding.logical_to_shardings(param_logical_axes(cfg), mesh)) each param is
  read and put onto its devices one tensor at a time, so the host never holds the whole model. Every
  tensor's name and shape is checked against the config (from the files' headers) before any is read.
  """
  cfg = config_from_hf(read_config(path), dtype)
  layout = hf_layout(cfg)
  np_dtype = jnp.dtype(dtype)
  with contextlib.ExitStack() as stack:
    files = _SafetensorsDir(path, stack)
    for t, _ in _in_order(layout):
      _check_shape(t, files.shape(t.name))
    if shardings is None:
      return cfg, jax.tree.map(lambda t: _place(t, files, np_dtype, None), layout)
    if jax.tree.structure(shardings) != jax.tree.structure(layout):
      raise ValueError(f"from_hf: shardings must have the params' tree {jax.tree.structure(layout)}, "
                       f"got {jax.tree.structure(shardings)}")
    return cfg, jax.tree.map(lambda t, s: _place(t, files, np_dtype, s), layout, shardings)


# --- writing ----------------------------------------------------------------------------------------

def tensors_from_params(params: dict, cfg: ModelConfig, dtype: str = "float32") -> dict[str, np.ndarray]:
  """HF tensor names and [out, in] layouts (numpy, `dtype`) from rr's tree: the inverse of
  `params_from_tensors`. Params may be jax arrays, sharded too: each is fetched on its own."""
  np_dtype = jnp.dtype(dtype)
  out = {}
  for t, x in _in_order(hf_layout(cfg), params):
    host = np.asarray(jax.device_get(x)).astype(np_dtype, copy=False)
    out[t.name] = np.ascontiguousarray(t.to_hf(host))
  return out


def to_hf(cfg: ModelConfig, params: dict, path: str, dtype: str = "float32") -> None:
  """Writes config.json and model.safetensors (weights in `dtype`: "float32" or "bfloat16") that
  transformers loads as the same model. Refuses a directory that already holds a model: rr never
  overwrites a user's files."""
  if dtype not in EXPORT_DTYPES:
    raise ValueError(f"to_hf: dtype={dtype!r}; choose one of {EXPORT_DTYPES}")
  if os.path.exists(os.path.join(path, "config.json")) or os.path.exists(os.path.join(path, "model.safetensors")):
    raise HFCheckpointError(f"{path} already holds a model (config.json / model.safetensors); pick a new directory")
  tensors = tensors_from_params(params, cfg, dtype)
  os.makedirs(path, exist_ok=True)
  save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config_to_hf(cfg, dtype), f, indent=2)
