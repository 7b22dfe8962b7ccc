"""Training loops, chosen by `config.trainer`."""

from __future__ import annotations


def run(config, workdir: str, **kwargs) -> dict:
  """Runs the loop named by `config.trainer` and returns its summary."""
  from rr.train import grpo, pipeline, sft

  trainers = {"sft": sft.run, "grpo": grpo.run, "distil_then_reinforce": pipeline.run}
  return trainers[config.trainer](config, workdir, **kwargs)
