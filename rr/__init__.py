"""rr: teach small student language models to reason with rationales, in JAX.

`import rr` stays light (no JAX) for config files and command-line helpers; a part such as rr.rewards or
rr.train is imported on first use, so `import rr` then `rr.rewards.register(...)` works as written.
"""

import importlib

_LAZY_PARTS = ("config", "data", "eval", "losses", "models", "rewards", "sampler", "tasks", "train")


def __getattr__(name: str):
  if name in _LAZY_PARTS:
    return importlib.import_module(f"rr.{name}")
  raise AttributeError(f"module 'rr' has no attribute {name!r}")
