"""The SFT job end to end on the runlocal config: files it writes, exact resume, 1 vs 8 devices, SIGTERM."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rr import train
from rr.checkpoint import Checkpoints
from rr.config import apply_overrides, load_config, read_run_config, run_config_files
from rr.train.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py")


def runlocal_config(*overrides):
  config = load_config(f"{SFT}:runlocal")
  apply_overrides(config, list(overrides))
  return config


def one_row_per_step_and_keys(workdir):
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  keys = [(r["step"], tuple(sorted(r))) for r in rows]
  return len(keys) == len(set(keys))


def losses(workdir):
  return {r["step"]: r["train/loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
          if "train/loss" in r}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("full"))
  summary = train.run(runlocal_config(), workdir)
  return workdir, summary


def test_run_writes_metrics_summary_curves_and_tensorboard(full_run):
  workdir, summary = full_run
  rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert all("step" in r for r in rows)
  assert sorted(losses(workdir)) == [2, 4, 6, 8, 10, 12]
  assert any("eval/accuracy" in r and r["step"] == 8 for r in rows)  # periodic evaluation
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  assert on_disk["step"] == 12 and on_disk["finished"] is True
  assert 0.0 <= on_disk["eval/accuracy"] <= 1.0 and "eval/step_accuracy" in on_disk
  assert on_disk["eval/num_examples"] == 16
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 1000
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(workdir, "tensorboard")))
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["12", "8"]
  assert summary["train/loss"] == on_disk["train/loss"]
  assert read_run_config(os.path.join(workdir, "config.json")).to_dict() == runlocal_config().to_dict()


def test_loss_goes_down(full_run):
  workdir, _ = full_run
  curve = losses(workdir)
  assert curve[12] < curve[2]


def test_resume_continues_exactly_where_it_stopped(full_run, tmp_path):
  workdir, _ = full_run
  resumed = str(tmp_path / "resumed")
  first = train.run(runlocal_config(), resumed, should_stop=lambda step: step == 6)
  assert first["finished"] is False and first["step"] == 6
  assert sorted(os.listdir(os.path.join(resumed, "checkpoints"))) == ["6"]
  train.run(runlocal_config(), resumed)
  steps = [2, 4, 6, 8, 10, 12]
  assert sorted(losses(resumed)) == steps
  np.testing.assert_allclose([losses(resumed)[s] for s in steps], [losses(workdir)[s] for s in steps], rtol=1e-6)
  assert run_config_files(resumed) == [os.path.join(resumed, "config.json")]  # same config: no second file


class _Killed(Exception):
  """Raised from should_stop: the loop ends with nothing saved, as under SIGKILL or a power loss."""


def test_rerun_after_a_crash_ends_like_an_uninterrupted_run_with_one_row_per_step(full_run, tmp_path):
  workdir, _ = full_run
  crashed = str(tmp_path / "crashed")

  def kill_at_10(step):
    if step == 10:  # step 10 is logged, the last checkpoint is step 8's
      raise _Killed
    return False

  with pytest.raises(_Killed):
    train.run(runlocal_config(), crashed, should_stop=kill_at_10)
  assert sorted(os.listdir(os.path.join(crashed, "checkpoints"))) == ["8"] and 10 in losses(crashed)
  with open(os.path.join(crashed, "metrics.jsonl"), "a") as f:
    f.write('{"step": 11, "train/lo')  # and the kill cut a write short
  train.run(runlocal_config(), crashed)
  assert one_row_per_step_and_keys(crashed)
  steps = [2, 4, 6, 8, 10, 12]
  assert sorted(losses(crashed)) == steps
  np.testing.assert_allclose([losses(crashed)[s] for s in steps], [losses(workdir)[s] for s in steps], rtol=1e-6)
  rows = read_metrics(os.path.join(crashed, "metrics.jsonl"))
  assert [r["step"] for r in rows if "eval/accuracy" in r] == [8, 12]


def test_finished_run_is_not_overwritten_by_a_rerun(full_run):
  workdir, _ = full_run
  ckpt = os.path.join(workdir, "checkpoints", "12")
  before = {n: os.path.getmtime(os.path.join(ckpt, n)) for n in os.listdir(ckpt)}
  train.run(runlocal_config(), workdir)
  assert {n: os.path.getmtime(os.path.join(ckpt, n)) for n in os.listdir(ckpt)} == before
  assert one_row_per_step_and_keys(workdir)  # its final evaluation, logged again, replaced the first


def _subprocess_losses(tmp_path, name, *flags, devices=8):
  workdir = str(tmp_path / name)
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-m", "rr.main", "--config", f"{SFT}:runlocal", "--workdir", workdir,
                           "--config.train.eval_every=0", "--config.eval.num_examples=8", *flags],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return losses(workdir)


def test_sharded_step_on_8_devices_matches_one_device(full_run, tmp_path):
  """The config path end to end: FSDP x tensor from config.mesh, with 2 micro-batches, logs one device's losses
  (tests/test_mesh_parallel.py checks each mesh's steps and samples)."""
  workdir, _ = full_run
  one_device = losses(workdir)
  got = _subprocess_losses(tmp_path, "fsdp4tp2", "--config.mesh.data=1", "--config.mesh.fsdp=4",
                           "--config.mesh.tensor=2", "--config.train.micro_batches=2")
  assert sorted(got) == sorted(one_device)
  np.testing.assert_allclose([got[s] for s in sorted(got)], [one_device[s] for s in sorted(got)], rtol=2e-5)


def test_batch_not_divisible_by_data_axis_is_a_config_error(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=3", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run([sys.executable, "-m", "rr.main", "--config", f"{SFT}:runlocal",
                           "--workdir", str(tmp_path / "w")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 2
  assert "batch_size=8 is not divisible by the 3 devices" in result.stderr


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "sig"
  proc = subprocess.Popen([sys.executable, "-m", "rr.main", "--config", f"{SFT}:runlocal", "--workdir",
                           str(workdir), "--config.train.steps=100000", "--config.train.log_every=1",
                           "--config.train.eval_every=0", "--config.train.checkpoint_every=100000"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 240
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 0, stderr[-2000:]
  assert "saving a checkpoint" in stderr
  steps = [int(s) for s in os.listdir(workdir / "checkpoints")]
  assert len(steps) == 1 and 2 <= steps[0] < 100000
  with open(workdir / "summary.json") as f:
    assert json.load(f)["finished"] is False


# Imported first by each launched process (PYTHONPATH): logs every file it opens for writing, creates or renames
# under RR_AUDIT_ROOT, as "<event> <path>" lines in RR_AUDIT_DIR/writes.<JAX_PROCESS_ID>. orbax's array shards
# (tensorstore, C++) are not seen; they live under checkpoints/.
AUDIT_HOOK = """
import os, sys
_root = os.environ["RR_AUDIT_ROOT"]
_log = os.open(os.path.join(os.environ["RR_AUDIT_DIR"], "writes." + os.environ.get("JAX_PROCESS_ID", "0")),
               os.O_WRONLY | os.O_CREAT | os.O_APPEND)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

def _hook(event, args):
  if event == "open":
    path, mode, flags = args
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
  elif event in ("os.rename", "os.mkdir"):
    path, writes = args[1] if event == "os.rename" else args[0], True
  else:
    return
  if writes and isinstance(path, str) and os.path.abspath(path).startswith(_root):
    os.write(_log, f"{event} {os.path.abspath(path)}\\n".encode())

sys.addaudithook(_hook)
"""


def launch_two_processes(tmp_path, workdir, *flags, config=f"{SFT}:runlocal", port_offset=0):
  """launch/local_multiprocess.sh with 2 processes, one CPU device each, every file write of each logged."""
  audit = tmp_path / "audit"
  audit.mkdir()
  (audit / "sitecustomize.py").write_text(AUDIT_HOOK)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{12000 + (os.getpid() + port_offset) % 20000}",
             PYTHON=sys.executable,  # this interpreter, whichever python is first on PATH
             PYTHONPATH=os.pathsep.join([str(audit)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
             RR_AUDIT_DIR=str(audit), RR_AUDIT_ROOT=str(workdir))
  return subprocess.Popen(["bash", "launch/local_multiprocess.sh", "2", "--config", config, "--workdir",
                           str(workdir), *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def writes_by_process(tmp_path, workdir):
  """{process id: the paths under `workdir` it wrote, relative to it}."""
  out = {}
  for i in (0, 1):
    log = tmp_path / "audit" / f"writes.{i}"
    lines = log.read_text().splitlines() if log.exists() else []
    out[i] = {os.path.relpath(line.split(" ", 1)[1], workdir) for line in lines}
  return out


def assert_only_process_0_wrote_run_files(tmp_path, workdir, expected):
  """Process 1 wrote nothing outside checkpoints/; process 0 wrote `expected` (so the log sees writes at all)."""
  writes = writes_by_process(tmp_path, workdir)
  assert not {p for p in writes[1] if p != "." and not p.startswith("checkpoints")}, writes[1]
  assert set(expected) <= writes[0], writes[0]


def test_two_process_launch_matches_one_process(full_run, tmp_path):
  """launch/local_multiprocess.sh: two processes, one CPU device each, one data-parallel mesh."""
  workdir, _ = full_run
  mp = tmp_path / "mp"
  proc = launch_two_processes(tmp_path, mp)
  _, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-3000:]
  got, want = losses(str(mp)), losses(workdir)
  assert sorted(got) == sorted(want)  # one writer: no duplicate rows
  assert len([r for r in read_metrics(str(mp / "metrics.jsonl")) if "train/loss" in r]) == len(got)
  np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)], rtol=2e-5)
  assert_only_process_0_wrote_run_files(tmp_path, str(mp), ["metrics.jsonl", "summary.json", "config.json",
                                                            "curves.png"])


GRPO = os.path.join(ROOT, "configs", "grpo.py")
# GRPO runlocal from scratch with a reward that varies within groups (lengths against a 4-token target), so the
# losses are not all 0; long enough to be stopped, checkpointed only when stopped.
GRPO_FLAGS = (("train.steps", "200"), ("train.log_every", "1"), ("train.eval_every", "0"),
              ("train.checkpoint_every", "1000"), ("eval.num_examples", "4"),
              ("rl.rewards", "correctness,length_penalty"), ("rl.reward_weights", "1,1"), ("rl.length_target", "4"))


def _children(pid):
  """{JAX_PROCESS_ID: pid} of the processes the launch script `pid` started."""
  out = {}
  for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
    environ = dict(item.split("=", 1) for item in open(f"/proc/{child}/environ").read().split("\0") if "=" in item)
    out[int(environ["JAX_PROCESS_ID"])] = int(child)
  return out


def test_two_process_grpo_stopped_by_sigterm_to_one_process_stops_both_at_one_step_like_one_process(tmp_path):
  """SIGTERM reaches process 1 only: both processes stop after the same step and save it together; the losses
  up to there, and the saved params, are those of a one-process run stopped at that step."""
  mp = tmp_path / "mp"
  proc = launch_two_processes(tmp_path, mp, *[f"--config.{k}={v}" for k, v in GRPO_FLAGS], config=f"{GRPO}:runlocal",
                              port_offset=1)
  deadline = time.time() + 300
  while len(losses(str(mp)) if (mp / "metrics.jsonl").exists() else {}) < 2:
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
    time.sleep(0.2)
  os.kill(_children(proc.pid)[1], signal.SIGTERM)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-3000:]
  # Both processes write to one pipe, so their lines may run together: find the messages, not the lines.
  stops = [int(step) for step in re.findall(r"rr: stopped at step (\d+);", stderr)]
  assert len(stops) == 2 and stops[0] == stops[1] and 2 <= stops[0] < 200, stderr[-3000:]
  stop = stops[0]
  checkpoints = Checkpoints(str(mp / "checkpoints"), read_only=True)
  assert checkpoints.latest_step() == stop
  with open(mp / "summary.json") as f:
    summary = json.load(f)
  assert summary["step"] == stop and summary["finished"] is False
  assert_only_process_0_wrote_run_files(tmp_path, str(mp), ["metrics.jsonl", "summary.json", "config.json"])

  one = str(tmp_path / "one")
  config = load_config(f"{GRPO}:runlocal")
  apply_overrides(config, list(GRPO_FLAGS))
  assert train.run(config, one, should_stop=lambda step: step == stop)["step"] == stop
  got, want = losses(str(mp)), losses(one)
  assert sorted(got) == sorted(want) == list(range(1, stop + 1)) and any(want.values())
  np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=2e-5, atol=1e-7)
  want_params = Checkpoints(os.path.join(one, "checkpoints"), read_only=True).read_params(stop)
  got_params = checkpoints.read_params(stop)  # saved by two processes, read by one
  for g, w in zip(jax.tree.leaves(got_params), jax.tree.leaves(want_params)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=1e-7)


def test_a_non_finite_sft_step_is_skipped_and_the_run_stops_with_finite_params(tmp_path):
  """lr 1e30 blows the loss up within a step or two: the step factory skips those updates, the loop names the
  term at its next log window and stops unfinished, and the checkpoint it leaves holds finite params."""
  summary = train.run(runlocal_config(("optim.lr", "1e30"), ("optim.clip_norm", "0")), str(tmp_path))
  assert not summary["finished"] and summary["step"] < 12
  checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
  params = checkpoints.read_params(summary["step"])
  assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params))
  checkpoints.close()


def test_rr_main_turns_on_the_persistent_compilation_cache_unless_one_is_set(monkeypatch, tmp_path):
  import jax

  from rr.main import use_compilation_cache

  monkeypatch.setenv("RR_JAX_CACHE", str(tmp_path / "cache"))
  session_cache = jax.config.jax_compilation_cache_dir  # the suite's own (tests/conftest.py)
  use_compilation_cache()
  assert jax.config.jax_compilation_cache_dir == session_cache  # a cache set already is kept
  try:
    jax.config.update("jax_compilation_cache_dir", None)
    use_compilation_cache()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("RR_JAX_CACHE", "")
    use_compilation_cache()
    assert jax.config.jax_compilation_cache_dir is None
  finally:
    jax.config.update("jax_compilation_cache_dir", session_cache)
