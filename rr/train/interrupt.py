"""Ctrl-C and SIGTERM ask the loop to stop after the current step, so it can save and exit cleanly.

In a job of several processes the signal may reach one of them only (a preempted VM, a scheduler that signals
one task), yet all of them must stop at the same step: orbax writes a step only when every process saves it,
and a process that runs on alone waits forever in the next step's collectives. So `agreed()`, called once per
loop step by every process, all-reduces the flags (a max over one int per device, a tiny jitted collective)
and answers with the result of AGREE_LAG calls before. Reading it that late costs no wait: the loop has already
fetched the metrics of the later step it was dispatched before, so the answer is on the host. Every process
reads the same reduced flag at the same call, so all stop after the same step, at most AGREE_LAG steps after
the signal. orbax's `reached_preemption` was not used: it sees only the SIGTERM that JAX's preemption notifier
catches (which this handler replaces), not Ctrl-C, and the loop's own stop then needs agreeing on anyway.
"""

from __future__ import annotations

import collections
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np

AGREE_LAG = 2  # loop steps between a stop flag's all-reduce and its reading (see the module docstring)


class StopRequest:
  """While active, SIGINT/SIGTERM set `requested` instead of killing the process; a second Ctrl-C kills."""

  def __init__(self):
    self.requested = False
    self._previous = {}
    self._pending = collections.deque()  # the all-reduced flags of the last calls to `agreed`, oldest first
    self._any_process = None

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread (e.g. a notebook worker): leave signals alone
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    return False

  def agreed(self) -> bool:
    """Whether to stop now. One process: `requested`. Several: every process must call this once per step; all
    get the same answer, whether any process had a request AGREE_LAG calls before."""
    if jax.process_count() == 1:
      return self.requested
    if self._any_process is None:
      self._any_process = _any_process_flag()
    self._pending.append(self._any_process(self.requested))
    if len(self._pending) <= AGREE_LAG:
      return False
    return bool(np.asarray(self._pending.popleft().addressable_data(0)))

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = True
    others = f" (with every process of the job, within {AGREE_LAG} steps)" if jax.process_count() > 1 else ""
    print(f"\nrr: got {signal.Signals(signum).name}; saving a checkpoint after this step{others}, then stopping "
          "(Ctrl-C again to abort without saving)", file=sys.stderr)


def _any_process_flag():
  """flag -> a replicated device scalar, dispatched and not fetched: the max of `flag` over every process."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
  per_device = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
  reduce = jax.jit(jnp.max, out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

  def any_process(flag: bool) -> jax.Array:
    local = np.full((jax.local_device_count(),), int(flag), np.int32)
    return reduce(jax.make_array_from_process_local_data(per_device, local))

  return any_process
