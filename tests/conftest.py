"""Fixtures several test files share: one small SFT checkpoint, and a reward with signal for any policy."""

import os
import shutil
import tempfile

import jax
import pytest

from rr import train
from rr.config import apply_overrides, load_config
from rr.rewards import RowReward, register, unregister

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_configure(config):
  """One compilation cache for the session: many tests compile the same nano-model steps and samplers, and a
  hit skips XLA's compile (the trace still runs, so compile counts and results are unchanged). Fresh per session."""
  config.rr_jax_cache = tempfile.mkdtemp(prefix="rr_tests_jax_cache_")
  jax.config.update("jax_compilation_cache_dir", config.rr_jax_cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  os.environ["RR_JAX_CACHE"] = config.rr_jax_cache  # runs in subprocesses (python -m rr.main) share it


def pytest_unconfigure(config):
  shutil.rmtree(getattr(config, "rr_jax_cache", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def sft_workdir(tmp_path_factory):
  """`configs/sft.py:runlocal` trained for its 12 steps: the checkpoint RL, PPO and eval tests start from.
  Tests may add files beside it (rr.eval writes eval/) but never change its checkpoints."""
  workdir = str(tmp_path_factory.mktemp("sft"))
  config = load_config(os.path.join(ROOT, "configs", "sft.py") + ":runlocal")
  apply_overrides(config, [("train.eval_every", "0"), ("eval.num_examples", "4")])
  train.run(config, workdir)
  return workdir


def _length_reward(rl=None, tokenizer=None):
  """Completion length / 10: varies within groups and is non-zero for any completion, so even an untrained
  policy gives GRPO a signal and PPO's value head a target."""
  return RowReward("length", lambda prompt, completion, example: len(completion) / 10.0)


@pytest.fixture(scope="session")
def length_reward():
  """Registers the "length" reward under `config.rl.rewards` for the tests that ask for it, as a user would."""
  register("length", factory=True)(_length_reward)
  yield "length"
  unregister("length")
