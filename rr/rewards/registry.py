"""Rewards by the name `config.rl.rewards` uses: one registry that the built-ins and users fill the same way,
so a user adds a reward from their own module without editing rr.

  import rr.rewards

  @rr.rewards.register("shout")
  def shout(prompt, completion, example) -> float:  # one completion's score; wrapped in RowReward
    return float(completion.isupper())

and a config file that imports that module names it: `c.rl.rewards = "correctness,shout"`. Three forms:
  register(name)(fn)                 fn(prompt, completion, example) -> float, scored row by row (`RowReward`).
  register(name)(reward)             a reward object already named `name`: a `RowReward`, a `TokenReward`, or
                                     any batched text reward with a `name` (rr.rewards.base.TextReward).
  register(name, factory=True)(make) make(rl, tokenizer) -> reward, called once per run, for rewards that read
                                     config.rl (a length budget) or the tokenizer.
`register` returns what it was given, so the decorated function stays callable as written.

Registering a name twice is an error that names both places: two rewards under one name would make the
metrics `rewards/<name>/mean` and the config ambiguous. The same object again, or a registration from the same
file and line (a module imported twice or reloaded, a config file executed again), replaces the entry instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from typing import Any, Callable

from rr.errors import UserError
from rr.rewards.base import RowReward, reward_name


class RewardRegistryError(UserError, ValueError):
  """A reward name is taken, unknown or malformed, or a registered factory built a reward of another name."""


@dataclasses.dataclass(frozen=True)
class _Entry:
  make: Callable[[Any, Any], Any]  # (rl, tokenizer) -> reward
  given: Any  # what was registered, so registering the same object again is no clash
  place: str  # "file:line" of the register call, named in errors


_ENTRIES: dict[str, _Entry] = {}


def _caller_place(depth: int) -> str:
  frame = sys._getframe(depth + 1)  # pylint: disable=protected-access
  return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _check_name(name) -> None:
  # config.rl.rewards is a comma-separated string and metric keys are slash-separated paths.
  if not isinstance(name, str) or not name or name != name.strip() or any(ch in name for ch in ",/ \t\n"):
    raise RewardRegistryError(f"rr.rewards.register: reward name {name!r} must be a non-empty string without "
                              "commas, slashes or spaces (config.rl.rewards lists names separated by commas)")


def _maker(name: str, given, factory: bool) -> Callable[[Any, Any], Any]:
  if not callable(given):
    raise RewardRegistryError(f"rr.rewards.register({name!r}) got {type(given).__name__} {given!r}; register a "
                              "function (prompt, completion, example) -> float, a reward object, or with "
                              "factory=True a function (rl, tokenizer) -> reward")
  if factory:
    return given
  if hasattr(given, "name"):  # an already-built reward object: RowReward, TokenReward, a TextReward
    if given.name != name:
      raise RewardRegistryError(f"rr.rewards.register({name!r}) got a reward named {given.name!r}; the two must "
                                "agree, since metrics use the reward's own name")
    return lambda rl, tokenizer: given
  return lambda rl, tokenizer: RowReward(name, given)


def register(name: str, *, factory: bool = False) -> Callable:
  """A decorator that registers a reward under `name` (forms in the module docstring) and returns it unchanged.

  RewardRegistryError if `name` is taken by a registration elsewhere (both places named); the same object, or
  the same file and line registering again, replaces the entry (re-imports and reloads)."""
  _check_name(name)
  place = _caller_place(1)

  def decorator(given):
    make = _maker(name, given, factory)
    old = _ENTRIES.get(name)
    if old is not None and old.given is not given and old.place != place:
      raise RewardRegistryError(f"reward {name!r} is registered twice: at {old.place} and at {place}; choose "
                                f"another name, or call rr.rewards.unregister({name!r}) first to replace it")
    _ENTRIES[name] = _Entry(make, given, place)
    return given

  return decorator


def unregister(name: str) -> None:
  """Removes `name`, so a test or a notebook can register another reward under it."""
  if name not in _ENTRIES:
    raise RewardRegistryError(f"rr.rewards.unregister: no reward {name!r} is registered{_did_you_mean(name)}")
  del _ENTRIES[name]


def reward_names() -> list[str]:
  """Every registered name, sorted: what `config.rl.rewards` may list."""
  return sorted(_ENTRIES)


def closest_name(name: str) -> str | None:
  """The registered name closest to a mistyped `name` (difflib), or None when none is close: the "did you mean"
  of every unknown-name error."""
  close = difflib.get_close_matches(name, list(_ENTRIES), n=1)
  return close[0] if close else None


def _did_you_mean(name: str) -> str:
  close = closest_name(name)
  return f" (did you mean {close!r}?)" if close else ""


def build_reward(name: str, rl, tokenizer):
  """The reward registered as `name`, built for this run's `config.rl` and tokenizer. RewardRegistryError for
  an unknown name or for a factory whose reward has another name (its metrics would not say `name`);
  whatever the factory raises (a ValueError for a bad rl setting) passes through."""
  entry = _ENTRIES.get(name)
  if entry is None:
    raise RewardRegistryError(f"no reward {name!r} is registered{_did_you_mean(name)}; registered: "
                              f"{', '.join(reward_names())}")
  reward = entry.make(rl, tokenizer)
  if reward_name(reward) != name:
    raise RewardRegistryError(f"reward {name!r} (registered at {entry.place}) built a reward named "
                              f"{reward_name(reward)!r}; give it name={name!r}, since metrics use the reward's own "
                              "name")
  return reward
