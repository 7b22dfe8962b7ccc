"""Model configuration and named size presets.

A ModelConfig is a frozen (hashable) dataclass, so it can be a static argument
to jit and a field of a flax Module. Presets hold shapes only; the vocabulary
size comes from the tokenizer, hence `model_config(preset, vocab_size)`.
"""

import dataclasses

import jax
import jax.numpy as jnp

_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn", "auto")
CUDNN_DTYPES = ("bfloat16", "float16")  # jax.nn.dot_product_attention(implementation="cudnn") takes these only


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int | None = None  # None -> hidden_size // num_heads
  rope_theta: float = 10000.0
  # Llama 3.1 rope scaling (rope_type "llama3"): long wavelengths are divided by rope_factor, short ones kept,
  # the band between low/high_freq_factor interpolated; rope_original_max_positions is the pre-training length.
  rope_type: str = "default"
  rope_factor: float = 1.0
  rope_low_freq_factor: float = 1.0
  rope_high_freq_factor: float = 4.0
  rope_original_max_positions: int = 8192
  rms_norm_eps: float = 1e-6
  qkv_bias: bool = False  # Qwen2
  qk_norm: bool = False  # Qwen3: RMSNorm over head_dim on q and k, before rope
  tie_embeddings: bool = True
  dtype: str = "float32"  # compute dtype
  param_dtype: str = "float32"
  embed_one_hot: bool = False  # one-hot @ table: fast backward on XLA:CPU for small vocab
  remat: str = "none"  # activation rematerialisation of each layer: none | full | dots
  # The attention core (rr.models.layers.attention_implementation): "xla" (einsum + softmax, any backend),
  # "cudnn" (cuDNN's fused kernel; refused unless on an NVIDIA GPU in bf16/fp16), "auto" (cudnn where it applies)
  attention: str = "auto"

  # Fields that change how the model runs, not what it computes: a checkpoint fits any value of these.
  RUNTIME_FIELDS = ("dtype", "param_dtype", "embed_one_hot", "remat", "attention")

  def __post_init__(self):
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                 "num_heads", "num_kv_heads"):
      if getattr(self, name) <= 0:
        raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"ModelConfig.num_heads ({self.num_heads}) must be a multiple of "
          f"num_kv_heads ({self.num_kv_heads}) for grouped-query attention")
    if self.head_dim is None and self.hidden_size % self.num_heads:
      raise ValueError(
          f"ModelConfig.hidden_size ({self.hidden_size}) is not divisible by num_heads "
          f"({self.num_heads}); set head_dim explicitly")
    if self.resolved_head_dim % 2:
      raise ValueError(f"head_dim must be even for rotary embeddings, got {self.resolved_head_dim}")
    if self.rope_type not in ("default", "llama3"):
      raise ValueError(f"ModelConfig.rope_type={self.rope_type!r}; choose 'default' or 'llama3'")
    if self.rope_type == "llama3" and not (
            self.rope_factor > 0 and 0 < self.rope_low_freq_factor < self.rope_high_freq_factor
            and self.rope_original_max_positions > 0):
      raise ValueError(
          "llama3 rope scaling needs rope_factor > 0, 0 < rope_low_freq_factor < rope_high_freq_factor and "
          f"rope_original_max_positions > 0; got factor={self.rope_factor}, "
          f"low/high_freq_factor={self.rope_low_freq_factor}/{self.rope_high_freq_factor}, "
          f"original_max_positions={self.rope_original_max_positions}")
    if self.remat not in ("none", "full", "dots"):
      raise ValueError(f"ModelConfig.remat={self.remat!r}; choose 'none', 'full' or 'dots'")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in _DTYPES:
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; choose one of {_DTYPES}")
    if self.attention not in ATTENTION_IMPLEMENTATIONS:
      raise ValueError(f"attention={self.attention!r}; choose one of {ATTENTION_IMPLEMENTATIONS}")
    if self.attention == "cudnn" and self.why_not_cudnn:
      raise ValueError(f"attention='cudnn' {self.why_not_cudnn}; use attention='auto' (cudnn where it applies) "
                       "or 'xla'")

  @property
  def why_not_cudnn(self) -> str:
    """Why cuDNN's fused attention cannot run this model here ('' when it can): attention='cudnn' fails with
    this before anything compiles, and attention='auto' falls back to xla."""
    if not on_cuda():
      return f"needs an NVIDIA GPU, but JAX runs on {jax.default_backend()!r}"
    if self.dtype not in CUDNN_DTYPES:
      return f"needs a bfloat16 or float16 compute dtype, got dtype={self.dtype!r}"
    if self.resolved_head_dim % 8 or self.resolved_head_dim > 128:
      return f"needs a head_dim that is a multiple of 8 and at most 128, got {self.resolved_head_dim}"
    return ""

  def architecture(self) -> dict:
    """The fields that fix the params and the function they compute (what a checkpoint record compares)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME_FIELDS}

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)


def on_cuda() -> bool:
  """JAX's default backend is an NVIDIA GPU (not ROCm, not CPU or TPU)."""
  return jax.default_backend() == "gpu" and "cuda" in jax.devices()[0].client.platform_version.lower()


# Shapes only (vocab comes from the tokenizer). "qwen2-*" are the bench shapes of
# ../shared/bench, the peer baselines (Qwen2: qkv bias, tied embeddings); the last two are the
# real Qwen2/Qwen3 checkpoints' shapes, for loading Hugging Face weights.
PRESETS: dict[str, dict] = {
    "nano": dict(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2),
    "micro": dict(hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2),
    "tiny": dict(hidden_size=128, intermediate_size=352, num_layers=4, num_heads=4, num_kv_heads=2),
    "small": dict(hidden_size=384, intermediate_size=1024, num_layers=6, num_heads=6, num_kv_heads=2),
    "qwen2-tiny": dict(hidden_size=256, intermediate_size=704, num_layers=4, num_heads=4,
                       num_kv_heads=2, qkv_bias=True, tie_embeddings=True),
    "qwen2-small": dict(hidden_size=512, intermediate_size=1408, num_layers=8, num_heads=8,
                        num_kv_heads=4, qkv_bias=True, tie_embeddings=True),
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14,
                       num_kv_heads=2, qkv_bias=True, tie_embeddings=True, rope_theta=1e6),
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_layers=28, num_heads=16,
                       num_kv_heads=8, head_dim=128, qk_norm=True, tie_embeddings=True,
                       rope_theta=1e6),
}


def model_config(preset: str, vocab_size: int, **overrides) -> ModelConfig:
  """Builds the ModelConfig of a named preset, with field overrides."""
  if preset not in PRESETS:
    raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(f"unknown ModelConfig field(s) {unknown} overriding preset {preset!r}; "
                     f"fields are {sorted(fields)}")
  return ModelConfig(vocab_size=vocab_size, **{**PRESETS[preset], **overrides})
