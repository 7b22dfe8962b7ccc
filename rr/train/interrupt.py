"""Ctrl-C and SIGTERM ask the loop to stop after the current step, so it can save and exit cleanly."""

from __future__ import annotations

import signal
import sys


class StopRequest:
  """While active, SIGINT/SIGTERM set `requested` instead of killing the process; a second Ctrl-C kills."""

  def __init__(self):
    self.requested = False
    self._previous = {}

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

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = True
    print(f"\nrr: got {signal.Signals(signum).name}; saving a checkpoint after this step, then stopping "
          "(Ctrl-C again to abort without saving)", file=sys.stderr)
