"""The launch scripts' --dry-run: what each would run, with the interpreter $PYTHON names, and nothing run."""

import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config", "configs/sft.py:runlocal", "--workdir", "/tmp/a run"]  # a space: the arguments stay whole


def dry_run(script, *args, **env):
  result = subprocess.run(["bash", f"launch/{script}", "--dry-run", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **env}, timeout=60)
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def test_local_multiprocess_runs_one_process_per_id_with_the_named_interpreter(tmp_path):
  lines = dry_run("local_multiprocess.sh", "3", *ARGS, JAX_COORDINATOR_ADDRESS="127.0.0.1:9999")
  assert len(lines) == 3
  for i, words in enumerate(lines):
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-") and "/" not in w.split("=")[0])
    assert env["JAX_PROCESS_ID"] == str(i) and env["JAX_NUM_PROCESSES"] == "3" and env["RR_DISTRIBUTED"] == "1"
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:9999"
    assert words[words.index(sys.executable):] == [sys.executable, "-m", "rr.main", *ARGS]
  assert not os.path.exists("/tmp/a run")


def test_slurm_runs_srun_with_the_named_interpreter():
  (words,) = dry_run("slurm_gpu.sbatch", *ARGS)
  assert words == ["RR_DISTRIBUTED=1", "srun", sys.executable, "-m", "rr.main", *ARGS]


def test_tpu_pod_copies_the_commit_to_every_worker_then_installs_and_runs_there():
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
  archive, scp, ssh = dry_run("tpu_pod.sh", "my-tpu", "us-central2-b", *ARGS, PYTHON="python3.11")
  assert archive[:3] == ["git", "-C", ROOT] and archive[-1] == commit and f"/tmp/rr-{commit}.tar.gz" in archive
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
  assert scp[6] == f"my-tpu:/tmp/rr-{commit}.tar.gz"
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"] and "--worker=all" in ssh
  remote = ssh[ssh.index("--command") + 1]
  assert remote.startswith(f"mkdir -p ~/rr-{commit} && tar -xzf /tmp/rr-{commit}.tar.gz -C ~/rr-{commit} && cd ")
  assert "python3.11 -m pip install -q -r requirements.txt 'jax[tpu]'" in remote
  head, _, tail = remote.partition(" && RR_DISTRIBUTED=1 python3.11 -m rr.main ")
  assert shlex.split(tail) == ARGS and head.endswith("'jax[tpu]'")  # the worker's shell reads the arguments whole
