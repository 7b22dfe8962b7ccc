"""Components by the name a config uses: one small registry type for trainers, objective terms, advantage
estimators, group filters and prompt sources (rewards keep their own, rr.rewards.registry, which wraps plain
functions), so a user adds any of them from their own module without editing rr:

  from rr.train import sources

  @sources.PROMPT_SOURCES.register("easiest_first")
  class EasiestFirst: ...

and a config line names it (`c.rl.prompt_source = "easiest_first"`). This module imports nothing heavy, so
config checks can ask it for names before JAX starts.

Registering a name twice from two places is an error naming both; the same object again, or the same file and
line (a module imported twice, a config file executed again), replaces the entry.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any, Callable

from rr.config import ConfigError


class RegistryError(ConfigError):
  """A component name is unknown, taken, or malformed; the message names the config key and the choices."""


class Registry:
  """Names to components of one kind. `kind` ("objective term") and `config_key` ("config.train.loss_terms")
  make the errors say what was looked up and where the name came from."""

  def __init__(self, kind: str, config_key: str):
    self.kind, self.config_key = kind, config_key
    self._entries: dict[str, tuple[Any, str]] = {}  # name -> (component, "file:line" of its registration)

  def register(self, name: str) -> Callable[[Any], Any]:
    """A decorator that registers its argument under `name` and returns it unchanged."""
    if not isinstance(name, str) or not name or any(ch in name for ch in ",/ \t\n"):
      raise RegistryError(f"{self.kind} name {name!r} must be a non-empty string without commas, slashes or "
                          f"spaces ({self.config_key} lists names separated by commas)")
    frame = sys._getframe(1)  # pylint: disable=protected-access
    place = f"{frame.f_code.co_filename}:{frame.f_lineno}"

    def decorator(component):
      old = self._entries.get(name)
      if old is not None and old[0] is not component and old[1] != place:
        raise RegistryError(f"{self.kind} {name!r} is registered twice: at {old[1]} and at {place}; choose "
                            "another name, or unregister the first")
      self._entries[name] = (component, place)
      return component

    return decorator

  def unregister(self, name: str) -> None:
    self.get(name)
    del self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def get(self, name: str, where: str | None = None) -> Any:
    """The component registered as `name`; RegistryError with "did you mean" and the choices otherwise.
    `where` names the config value the name came from (default: the registry's config key)."""
    if name in self._entries:
      return self._entries[name][0]
    close = difflib.get_close_matches(name, list(self._entries), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RegistryError(f"{where or self.config_key}: no {self.kind} {name!r} is registered{hint}; choose from "
                        f"{', '.join(self.names())}, or register your own in a module your config file imports")


def split_names(text: str) -> list[str]:
  """`"a, b,,c"` -> ["a", "b", "c"]: the comma-separated name lists of config values."""
  return [n.strip() for n in text.split(",") if n.strip()]
