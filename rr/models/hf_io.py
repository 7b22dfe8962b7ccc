"""Hugging Face checkpoints in and out: a local directory (config.json + safetensors) to rr params and back.

Supported now: Qwen2 (qkv bias, tied or untied), Qwen3 (qk-norm, explicit head_dim) and Llama without rope
scaling. Weights are read with safetensors' numpy reader (no torch) and mapped onto rr's tree: HF keeps
[out, in] matrices, rr keeps [in, heads, head_dim] / [heads, head_dim, out] kernels, so every projection is
a transpose and a reshape (`to_hf` does the inverse). Anything unsupported or missing stops with a message
naming it.
"""

import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

from rr.models.config import ModelConfig

SUPPORTED = ("qwen2", "qwen3", "llama")


class HFCheckpointError(ValueError):
    """A Hugging Face directory rr cannot read; the message names the file, field or tensor."""


def is_hf_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def config_from_hf(hf: dict, dtype: str = "float32") -> ModelConfig:
    """rr's ModelConfig from a Hugging Face config.json dict."""
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED:
        raise HFCheckpointError(f"config.json model_type={model_type!r} is not supported; rr reads {SUPPORTED}")
    # transformers 5 writes rope settings under "rope_parameters"; older files use rope_theta / rope_scaling.
    rope = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise HFCheckpointError(f"config.json rope type {rope_type!r} is not supported yet (only 'default')")
    if hf.get("use_sliding_window"):
        raise HFCheckpointError("config.json use_sliding_window=true is not supported; rr attends to every token")
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
            num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"], head_dim=hf.get("head_dim"),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            qkv_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
            qk_norm=model_type == "qwen3", tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            dtype=dtype, param_dtype=dtype)
    except KeyError as e:
        raise HFCheckpointError(f"config.json has no {e.args[0]!r}, which rr needs") from None


def _read_tensors(path: str) -> dict[str, np.ndarray]:
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.isfile(os.path.join(path, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise HFCheckpointError(f"{path} has no model.safetensors (or model.safetensors.index.json); rr reads "
                                "safetensors only: save with save_pretrained(..., safe_serialization=True)")
    tensors = {}
    for name in files:
        tensors.update(load_file(os.path.join(path, name)))
    return tensors


def params_from_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig) -> dict:
    """rr's param tree from HF tensor names; names the first missing or mis-shaped tensor."""
    N, KV, H, D = cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim, cfg.hidden_size

    def get(name: str, shape: tuple) -> np.ndarray:
        if name not in tensors:
            raise HFCheckpointError(f"tensor {name!r} is missing from the checkpoint")
        value = np.asarray(tensors[name], np.float32)
        if value.shape != shape:
            raise HFCheckpointError(f"tensor {name!r} has shape {value.shape}; the config says {shape}")
        return value

    params = {"embed": {"embedding": get("model.embed_tokens.weight", (cfg.vocab_size, D))},
              "final_norm": {"scale": get("model.norm.weight", (D,))}}
    for i in range(cfg.num_layers):
        pre = f"model.layers.{i}."
        attn = {}
        for name, heads in (("q", N), ("k", KV), ("v", KV)):
            attn[name] = {"kernel": get(pre + f"self_attn.{name}_proj.weight", (heads * H, D)).T.reshape(D, heads, H)}
            if cfg.qkv_bias:
                attn[name]["bias"] = get(pre + f"self_attn.{name}_proj.bias", (heads * H,)).reshape(heads, H)
        attn["o"] = {"kernel": get(pre + "self_attn.o_proj.weight", (D, N * H)).T.reshape(N, H, D)}
        if cfg.qk_norm:
            attn["q_norm"] = {"scale": get(pre + "self_attn.q_norm.weight", (H,))}
            attn["k_norm"] = {"scale": get(pre + "self_attn.k_norm.weight", (H,))}
        F = cfg.intermediate_size
        params[f"layers_{i}"] = {
            "attn": attn,
            "input_norm": {"scale": get(pre + "input_layernorm.weight", (D,))},
            "post_attn_norm": {"scale": get(pre + "post_attention_layernorm.weight", (D,))},
            "mlp": {"gate": {"kernel": get(pre + "mlp.gate_proj.weight", (F, D)).T},
                    "up": {"kernel": get(pre + "mlp.up_proj.weight", (F, D)).T},
                    "down": {"kernel": get(pre + "mlp.down_proj.weight", (D, F)).T}},
        }
    if not cfg.tie_embeddings:
        params["lm_head"] = {"kernel": get("lm_head.weight", (cfg.vocab_size, D)).T}
    return params


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


def from_hf(path: str, dtype: str = "float32") -> tuple[ModelConfig, dict]:
    """(model_config, params as numpy float32 arrays) from a local Hugging Face model directory."""
    cfg = config_from_hf(read_config(path), dtype)
    return cfg, params_from_tensors(_read_tensors(path), cfg)


def _model_type(cfg: ModelConfig) -> str:
    if cfg.qk_norm:
        return "qwen3"
    return "qwen2" if cfg.qkv_bias else "llama"


def config_to_hf(cfg: ModelConfig) -> dict:
    """A config.json dict transformers reads back as the same architecture (Qwen3 with qk-norm, Qwen2 with
    qkv bias, Llama otherwise)."""
    model_type = _model_type(cfg)
    architectures = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
    hf = {"architectures": [architectures[model_type]], "model_type": model_type, "vocab_size": cfg.vocab_size,
          "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
          "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
          "num_key_value_heads": cfg.num_kv_heads,
          "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
          "rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": "default"},
          "tie_word_embeddings": cfg.tie_embeddings, "hidden_act": "silu", "torch_dtype": cfg.param_dtype,
          "max_position_embeddings": 32768, "use_sliding_window": False}
    if cfg.head_dim is not None:  # otherwise transformers derives hidden_size // heads, as rr does
        hf["head_dim"] = cfg.head_dim
    if model_type == "llama":
        hf["attention_bias"] = False
    return hf


def tensors_from_params(params: dict, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """HF tensor names and [out, in] layouts from rr's tree: the inverse of `params_from_tensors`."""
    N, KV, H, D = cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim, cfg.hidden_size
    arr = lambda x: np.ascontiguousarray(np.asarray(x, np.float32))  # noqa: E731
    out = {"model.embed_tokens.weight": arr(params["embed"]["embedding"]),
           "model.norm.weight": arr(params["final_norm"]["scale"])}
    for i in range(cfg.num_layers):
        pre, layer = f"model.layers.{i}.", params[f"layers_{i}"]
        attn = layer["attn"]
        for name, heads in (("q", N), ("k", KV), ("v", KV)):
            out[pre + f"self_attn.{name}_proj.weight"] = arr(np.asarray(attn[name]["kernel"]).reshape(D, heads * H).T)
            if cfg.qkv_bias:
                out[pre + f"self_attn.{name}_proj.bias"] = arr(np.asarray(attn[name]["bias"]).reshape(heads * H))
        out[pre + "self_attn.o_proj.weight"] = arr(np.asarray(attn["o"]["kernel"]).reshape(N * H, D).T)
        if cfg.qk_norm:
            out[pre + "self_attn.q_norm.weight"] = arr(attn["q_norm"]["scale"])
            out[pre + "self_attn.k_norm.weight"] = arr(attn["k_norm"]["scale"])
        out[pre + "input_layernorm.weight"] = arr(layer["input_norm"]["scale"])
        out[pre + "post_attention_layernorm.weight"] = arr(layer["post_attn_norm"]["scale"])
        for name in ("gate", "up", "down"):
            out[pre + f"mlp.{name}_proj.weight"] = arr(np.asarray(layer["mlp"][name]["kernel"]).T)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = arr(np.asarray(params["lm_head"]["kernel"]).T)
    return out


def to_hf(cfg: ModelConfig, params: dict, path: str) -> None:
    """Writes config.json and model.safetensors (float32) that transformers loads as the same model. Refuses
    a directory that already holds a model: rr never overwrites a user's files."""
    if os.path.exists(os.path.join(path, "config.json")) or os.path.exists(os.path.join(path, "model.safetensors")):
        raise HFCheckpointError(f"{path} already holds a model (config.json / model.safetensors); pick a new directory")
    os.makedirs(path, exist_ok=True)
    save_file(tensors_from_params(params, cfg), os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config_to_hf(cfg), f, indent=2)
