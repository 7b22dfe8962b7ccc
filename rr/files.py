"""Files rr writes whole: a kill (even SIGKILL) leaves the old file (or none) or the new one, never part of it."""

from __future__ import annotations

import os


def write_atomic(path: str, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, syncs it to disk, then renames it over `path`."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
