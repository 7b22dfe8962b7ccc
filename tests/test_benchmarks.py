"""The benchmarks' shared arithmetic (benchmarks/flops.py) against hand counts, the GPU script's syntax and its
--dry-run, and generate.py end to end at a tiny shape (train_step.py and grpo_step.py compile a whole training
step each, too slow for the suite: `bash benchmarks/gpu_all.sh` with tiny shapes is their smoke run)."""

import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks import flops  # noqa: E402
from rr.models import model_config  # noqa: E402

SCRIPT = REPO / "benchmarks" / "gpu_all.sh"
STEPS = ("tests", "peer_train", "rr_train", "peer_gen", "rr_gen", "peer_grpo", "rr_grpo", "rr_train_xla")


def test_matmul_params_leave_out_only_an_untied_input_table():
  layer = {"attn": {"q": {"kernel": np.zeros((8, 2, 4))}}, "mlp": {"up": {"kernel": np.zeros((8, 16))}}}
  tied = {"embed": {"embedding": np.zeros((50, 8))}, "layers_0": layer}
  untied = {**tied, "lm_head": {"kernel": np.zeros((8, 50))}}
  assert flops.matmul_params(tied) == 50 * 8 + 64 + 128
  assert flops.matmul_params(untied) == 64 + 128 + 8 * 50


def test_train_flops_and_decode_bytes_by_hand_at_qwen2_0_5b():
  cfg = model_config("qwen2-0.5b", 151936, dtype="bfloat16", param_dtype="bfloat16")
  n = 494_032_768  # the tied model's params (tests/test_model.py checks the preset's count)
  assert flops.train_flops_per_token(cfg, n, 2048) == 6 * n + 6 * 24 * 2048 * 14 * 64
  kv_bytes = 2 * 24 * 256 * (128 + 256) * 2 * 64 * 2  # K and V, layers, rows, slots, kv heads, head dim, bf16
  assert flops.decode_bytes_per_step(cfg, n, 256, 128 + 256) == 2 * n + kv_bytes


@pytest.mark.parametrize("kind,want", [("NVIDIA H200", (989.0, 4800.0)), ("NVIDIA H100 80GB HBM3", (989.0, 3350.0)),
                                       ("NVIDIA H100 PCIe", (756.0, 2000.0)), ("cpu", (None, None))])
def test_device_peaks_from_the_table_unless_flags_say_otherwise(monkeypatch, kind, want):
  monkeypatch.setattr(flops.jax, "devices", lambda: [types.SimpleNamespace(device_kind=kind)])
  no_flags = types.SimpleNamespace(peak_tflops=None, peak_gbps=None)
  peaks = flops.device_peaks(no_flags)
  assert (peaks["peak_tflops"], peaks["peak_gbps"]) == want
  assert flops.mfu(494e12, peaks) == (None if want[0] is None else 494e12 / (want[0] * 1e12))
  flagged = flops.device_peaks(types.SimpleNamespace(peak_tflops=100.0, peak_gbps=None))
  assert flagged["peak_tflops"] == 100.0 and flagged["peak_gbps"] == want[1]
  assert flagged["peak_source"] == ("flag/table" if want[1] else "flag/none")


def test_gpu_script_parses_and_its_dry_run_lists_every_step_without_running_any(tmp_path):
  assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
  out = tmp_path / "out"
  result = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OUT": str(out)}, timeout=30)
  assert result.returncode == 0, result.stderr
  listed = [line.split()[0].strip("[]") for line in result.stdout.splitlines() if line.startswith("[")]
  assert listed == ["setup", *STEPS]
  assert "--size qwen0.5b --dtype bfloat16 --batch 8 --seq 2048" in result.stdout
  assert "--batch 256 --prompt-len 128 --new-tokens 256" in result.stdout
  assert not out.exists()  # nothing ran, nothing was written
  assert subprocess.run(["bash", str(SCRIPT), "--bogus"], cwd=REPO, capture_output=True).returncode == 2


def test_generate_benchmark_runs_at_a_tiny_shape_and_reports_its_bandwidth_fraction():
  result = subprocess.run(
      [sys.executable, "benchmarks/generate.py", "--size", "tiny", "--batch", "2", "--prompt-len", "16",
       "--new-tokens", "4", "--reps", "1", "--peak-gbps", "25"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  row = json.loads(result.stdout.strip().splitlines()[-1])
  assert row["new_tokens_per_s"] == pytest.approx(2 * 4 / row["median_s"])
  # One rep on a loaded machine can time the prefill alone above the whole generate: the step time is then 0 and
  # the fraction unknown, never negative
  assert row["decode_step_s"] == pytest.approx(max(row["median_s"] - row["prefill_s"], 0.0) / 4)
  if row["decode_step_s"] == 0.0:
    assert row["decode_bandwidth_fraction"] is None
    return
  fraction = row["decode_bytes_per_step"] / row["decode_step_s"] / 25e9
  assert row["decode_bandwidth_fraction"] == pytest.approx(fraction) and fraction > 0
