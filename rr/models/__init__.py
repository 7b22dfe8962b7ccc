"""Decoder-only transformers (Llama/Qwen family) as pure functions of params and a KV cache."""

from rr.models.cache import cache_logical_axes, init_cache, repeat_rows
from rr.models.config import PRESETS, ModelConfig, model_config
from rr.models.decoder import REMAT_POLICIES, Decoder, forward, init_params, param_logical_axes
from rr.models.hf_io import HFCheckpointError, from_hf, to_hf
from rr.models.lora import adapter_logical_axes, init_adapters, merge_adapters, state_params
from rr.models.shared_prompt import shared_prompt_forward
from rr.models.value_head import apply_value_head, init_value_head

__all__ = [
    "ModelConfig", "PRESETS", "model_config", "Decoder", "init_params", "param_logical_axes",
    "init_cache", "cache_logical_axes", "repeat_rows", "forward", "shared_prompt_forward", "REMAT_POLICIES",
    "from_hf", "to_hf", "HFCheckpointError", "init_value_head", "apply_value_head",
    "init_adapters", "adapter_logical_axes", "merge_adapters", "state_params",
]
