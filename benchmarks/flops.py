"""The arithmetic the benchmarks share: model FLOPs per training token, bytes a decode step reads, device peaks.

MFU (model FLOPs utilisation) = model FLOPs per second / the device's peak, where a training token costs
6 N + 6 L T h d FLOPs (forward + backward; PaLM, arXiv:2204.02311, appendix B, with the attention term halved
for causal masking): N = the params that take part in matmuls (every param but an untied input embedding table,
which is a gather; a tied table is the lm head and counts once), L layers, T the sequence length, h x d query heads
x head dim. Model FLOPs ignore remat's recomputation and count what the model needs, not what the program runs.

Decoding is bound by memory bandwidth: each decode step reads every matmul param once and the whole KV cache
(2 L B S kv d elements: rr's cache has S = prompt bucket + new tokens slots, all read at every step). The fraction
of the bandwidth bound = those bytes / step time / the device's bandwidth.

Peaks: a small table of known devices (dense bf16 TFLOP/s and HBM GB/s, from NVIDIA's datasheets), else
--peak-tflops / --peak-gbps, else none (a CPU's figures are the user's to give).
"""

import argparse

import jax
import numpy as np

# Substrings of jax's device_kind, first match wins: (dense bf16 TFLOP/s, memory GB/s).
KNOWN_PEAKS = (("H100 PCIe", 756.0, 2000.0), ("H100", 989.0, 3350.0), ("H200", 989.0, 4800.0))
TRAIN_FLOPS_FORMULA = ("6*N + 6*L*T*heads*head_dim per token (PaLM arXiv:2204.02311 app. B, causal half); "
                       "N = matmul params: all but an untied input embedding")
DECODE_BYTES_FORMULA = "matmul param bytes + 2*L*B*S*kv_heads*head_dim*cache itemsize, S = prompt bucket + new"


def add_peak_args(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--peak-tflops", type=float, default=None,
                      help="the device's peak for MFU (default: the known-device table; none on CPU)")
  parser.add_argument("--peak-gbps", type=float, default=None,
                      help="the device's memory bandwidth for decoding's bound (default: the known-device table)")


def device_peaks(args) -> dict:
  """{"device_kind", "peak_tflops", "peak_gbps", "peak_source"}: each peak from its flag, else the table, else
  None (then no MFU / bandwidth fraction is reported)."""
  kind = jax.devices()[0].device_kind
  table = next(((tflops, gbps) for name, tflops, gbps in KNOWN_PEAKS if name in kind), (None, None))
  peaks, sources = {}, []
  for key, flag, known in (("peak_tflops", args.peak_tflops, table[0]), ("peak_gbps", args.peak_gbps, table[1])):
    peaks[key] = flag if flag is not None else known
    sources.append("flag" if flag is not None else "table" if known is not None else "none")
  return {"device_kind": kind, **peaks, "peak_source": "/".join(sources)}


def matmul_params(params: dict) -> int:
  """N of the FLOPs formula: every param, less the input embedding table when an lm_head has its own."""
  total = sum(x.size for x in jax.tree.leaves(params))
  return int(total - (params["embed"]["embedding"].size if "lm_head" in params else 0))


def train_flops_per_token(cfg, n_matmul: int, seq: int) -> float:
  return 6.0 * n_matmul + 6.0 * cfg.num_layers * seq * cfg.num_heads * cfg.resolved_head_dim


def decode_bytes_per_step(cfg, n_matmul: int, batch: int, cache_len: int) -> int:
  """Bytes one decode step reads: the matmul params (in the params' dtype) and every slot of the KV cache."""
  param_bytes = n_matmul * np.dtype(cfg.param_dtype).itemsize
  cache_bytes = 2 * cfg.num_layers * batch * cache_len * cfg.num_kv_heads * cfg.resolved_head_dim
  return int(param_bytes + cache_bytes * np.dtype(cfg.dtype).itemsize)


def mfu(flops_per_s: float, peaks: dict) -> float | None:
  return None if peaks["peak_tflops"] is None else flops_per_s / (peaks["peak_tflops"] * 1e12)


def bandwidth_fraction(bytes_per_s: float, peaks: dict) -> float | None:
  return None if peaks["peak_gbps"] is None else bytes_per_s / (peaks["peak_gbps"] * 1e9)
