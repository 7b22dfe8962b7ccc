"""LoRA (arXiv 2106.09685): trainable low-rank adapters over a frozen model's projection kernels.

A target projection's kernel W, of input axes I... and output axes O..., gets A [I..., r] and B [r, O...]; the
model computes with W + scale * A @ B (contracting the rank r), scale = alpha / r. B starts at zero, so an adapted
model starts as its base exactly; A is drawn from N(0, 1 / fan_in), fan_in = prod(I...), as the paper's Gaussian.
The adapters mirror the param tree, {"layers_0": {"attn": {"q": {"a": A, "b": B}}}}, and carry the logical axes
of the kernel they adapt plus "lora" for the rank (mesh.rules.lora), so each shards like its kernel.

Merging is a pure function of (params, adapters, scale): the train step merges inside its jit (the gradient
reaches A and B through it), samplers and exports merge once.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from rr.models.config import ModelConfig
from rr.models.decoder import init_params, param_logical_axes

RANK_AXIS = "lora"
# Target name -> (the layer's module that holds it, how many leading kernel axes are inputs); the names are
# rr.models.layers' Projection names and rr.config's LORA_TARGETS.
TARGETS = {"q": ("attn", 1), "k": ("attn", 1), "v": ("attn", 1), "o": ("attn", 2),
           "gate": ("mlp", 1), "up": ("mlp", 1), "down": ("mlp", 1)}


def _adapted(cfg: ModelConfig, targets: Sequence[str]) -> list[tuple[str, str, str]]:
  """(layer, module, projection) of every adapted kernel, in a fixed order whatever the order of `targets`."""
  unknown = sorted(set(targets) - set(TARGETS))
  if unknown:
    raise ValueError(f"unknown LoRA target(s) {unknown}; choose among {list(TARGETS)}")
  names = [name for name in TARGETS if name in targets]
  return [(f"layers_{i}", TARGETS[name][0], name) for i in range(cfg.num_layers) for name in names]


def init_adapters(cfg: ModelConfig, targets: Sequence[str], rank: int, rng: jax.Array) -> dict:
  """Fresh float32 adapters for the `targets` projections of every layer: A ~ N(0, 1 / fan_in), B = 0."""
  shapes = jax.eval_shape(lambda: init_params(cfg, jax.random.key(0)))
  adapters: dict = {}
  for index, (layer, module, name) in enumerate(_adapted(cfg, targets)):
    kernel = shapes[layer][module][name]["kernel"].shape
    inputs = TARGETS[name][1]
    a = jax.random.normal(jax.random.fold_in(rng, index), (*kernel[:inputs], rank), jnp.float32)
    adapters.setdefault(layer, {}).setdefault(module, {})[name] = {
        "a": a / math.sqrt(math.prod(kernel[:inputs])), "b": jnp.zeros((rank, *kernel[inputs:]), jnp.float32)}
  return adapters


def adapter_logical_axes(cfg: ModelConfig, targets: Sequence[str]) -> dict:
  """PartitionSpecs over logical axis names, same tree as init_adapters: A takes its kernel's input axes, B its
  output axes, both the rank axis."""
  kernel_axes = param_logical_axes(cfg)
  axes: dict = {}
  for layer, module, name in _adapted(cfg, targets):
    spec = tuple(kernel_axes[layer][module][name]["kernel"])
    inputs = TARGETS[name][1]
    axes.setdefault(layer, {}).setdefault(module, {})[name] = {
        "a": PartitionSpec(*spec[:inputs], RANK_AXIS), "b": PartitionSpec(RANK_AXIS, *spec[inputs:])}
  return axes


def merge_adapters(params: dict, adapters: dict, scale, dtype=jnp.float32) -> dict:
  """`params` with every adapted kernel replaced by W + scale * A @ B, computed in float32 and returned in `dtype`;
  the other leaves as they are (the model casts each to its compute dtype at use). Pure and jittable."""
  merged = dict(params)
  for layer, modules in adapters.items():
    merged[layer] = dict(merged[layer])
    for module, projections in modules.items():
      merged[layer][module] = dict(merged[layer][module])
      for name, ab in projections.items():
        delta = jnp.tensordot(ab["a"], ab["b"], axes=1, precision=jax.lax.Precision.HIGHEST)
        kernel = params[layer][module][name]["kernel"].astype(jnp.float32) + scale * delta
        merged[layer][module][name] = {**params[layer][module][name], "kernel": kernel.astype(dtype)}
  return merged


@jax.jit
def _merged(params, adapters, scale):
  return merge_adapters(params, adapters, scale)


def state_params(state: dict) -> dict:
  """The params a train state (or a checkpoint's saved state) computes with: its "params" merged with its
  "lora" adapters and "lora_scale" when it has them (float32 merged kernels, cast at use by the model), else
  "params" itself."""
  if "lora" not in state:
    return state["params"]
  return _merged(state["params"], state["lora"], state["lora_scale"])
