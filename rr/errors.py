"""The one base class for mistakes a user can fix (bad config, missing file, wrong checkpoint).

`rr.main` turns any UserError into one line on stderr and a non-zero exit, before training starts.
Bugs in rr stay ordinary exceptions with tracebacks.
"""


class UserError(Exception):
  """Something the user gave rr is wrong; the message names it and says how to fix it."""
