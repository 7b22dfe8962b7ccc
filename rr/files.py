"""Run files on a local disk or an object store (gs://, s3://, ...: any URI etils.epath reads), written whole.

A local path goes through `os` exactly as it always has; a URI goes through etils.epath (which needs gcsfs or
tensorflow for gs://, s3fs for s3://). `check_storage` tries a URI before any work starts, so a missing package
is one UserError naming the path and what to install, and "gs://b/run" never becomes a local "gs:" folder.

Whole writes: a kill (even SIGKILL) leaves the old file (or none) or the new one, never part of it. Locally
that is a synced temporary file renamed over the target; on an object store an upload of a whole object is
atomic by itself. Object stores cannot append, so `append` there rewrites the object with the new text at its
end (metrics.jsonl: a few kilobytes per log, fine at rr's log rates).
"""

from __future__ import annotations

import os
import re

from rr.errors import UserError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: str) -> bool:
  """Whether `path` names an object-store location ("gs://bucket/run"), not a local file."""
  return bool(_URI.match(os.fspath(path)))


def absolute(path: str) -> str:
  """The path a run records and reopens: a local path made absolute, a URI as it is."""
  path = os.fspath(path)
  return path if is_uri(path) else os.path.abspath(path)


def check_storage(path: str, what: str = "--workdir") -> None:
  """Stops with a UserError before any work when the URI `path` cannot be read (a package epath needs for its
  scheme is missing, an unknown scheme, no credentials); a local path is always fine."""
  if not is_uri(path):
    return
  try:
    _uri(path).exists()
  except ImportError as e:
    raise UserError(f"{what}={path!r} is on an object store, and reading it needs a package that is not "
                    f"installed ({e}): pip install gcsfs (gs://) or s3fs (s3://), or tensorflow; or pass a local "
                    f"{what}") from e
  except Exception as e:  # an unknown scheme, no credentials, no such bucket: in the store's own words
    raise UserError(f"cannot reach {what}={path!r} ({type(e).__name__}: {e}); check the URI and the "
                    "credentials, or pass a local path") from e


def makedirs(path: str, what: str = "--workdir") -> None:
  """Creates directory `path` and its parents (a URI is checked first: `check_storage`)."""
  if is_uri(path):
    check_storage(path, what)
    _uri(path).mkdir(parents=True, exist_ok=True)
  else:
    os.makedirs(path, exist_ok=True)


def exists(path: str) -> bool:
  return _uri(path).exists() if is_uri(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return _uri(path).is_dir() if is_uri(path) else os.path.isdir(path)


def isfile(path: str) -> bool:
  return _uri(path).is_file() if is_uri(path) else os.path.isfile(path)


def listdir(path: str) -> list[str]:
  """The names in directory `path`; [] when it does not exist."""
  if not isdir(path):
    return []
  return [p.name for p in _uri(path).iterdir()] if is_uri(path) else os.listdir(path)


def read_text(path: str) -> str:
  """The text at `path` (FileNotFoundError when there is none)."""
  if is_uri(path):
    return _uri(path).read_text(encoding="utf-8")
  with open(path, encoding="utf-8") as f:
    return f.read()


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes `data` whole: locally to a temporary file beside `path`, synced to disk, then renamed over `path`;
  on an object store as one upload."""
  binary = isinstance(data, bytes)
  if is_uri(path):
    _uri(path).write_bytes(data if binary else data.encode("utf-8"))
    return
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_new(path: str, data: str | bytes) -> None:
  """Writes `data` to `path`, which must not exist yet (FileExistsError): never over a file already there."""
  if is_uri(path):
    if _uri(path).exists():
      raise FileExistsError(path)
    write_atomic(path, data)
    return
  with open(path, "xb") if isinstance(data, bytes) else open(path, "x", encoding="utf-8") as f:
    f.write(data)


def append(path: str, text: str) -> None:
  """Adds `text` at the end of `path` (created if missing)."""
  if is_uri(path):
    write_atomic(path, (read_text(path) if exists(path) else "") + text)
  else:
    with open(path, "a", encoding="utf-8") as f:
      f.write(text)


def _uri(path: str):
  from etils import epath  # imported for URIs only: a local run never loads it

  return epath.Path(path)
