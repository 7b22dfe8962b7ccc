"""The error rr.data raises for input a user can fix: a missing file, a malformed line, a too-long example."""

from __future__ import annotations

from rr.errors import UserError


class DataError(UserError, ValueError):
  """Data or a tokenizer is wrong; the message names the file (and line) and says how to fix it."""
