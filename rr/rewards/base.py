"""The reward protocols and the one place host rewards are called: `score_rewards`, which never lets a bad row
kill the run.

Three kinds of reward:
  text reward     host function (prompts, completions, examples) -> float32 [N]; parses text, runs verifiers.
  token reward    `TokenReward`: a jitted function (tokens_NxC, mask_NxC, params) -> float32 [N]; numeric or
                  model-based (params of a frozen scoring model).
  rollout reward  `RolloutReward`: reads the whole rollout (`RolloutView`: texts, prompt ids, completion ids,
                  the sampler's log-probs, the params that sampled) and scores it with models of its own, which
                  the trainer places on the run's mesh once (`bind`): a frozen student that reads a teacher's
                  explanation, or the policy itself against an EMA baseline.
Each carries a `name`, used in metrics as `rewards/<name>/mean` and `rewards/<name>/std` (TRL's names).

A reward that raises, returns the wrong shape, or returns a non-finite value for a row makes that row invalid:
it is listed in `failures` with the reward's name and the row, its reward entries are 0, and the trainer gives
it no advantage. The other rows keep their rewards and the batch is not lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol, Sequence, runtime_checkable

import jax
import numpy as np

from rr.tasks import Example

MAX_ERROR_CHARS = 300  # a failure message is cut here so one bad row cannot flood the log


@runtime_checkable
class TextReward(Protocol):
  """Host-side reward over decoded text: one float per completion. Examples carry the task and its answer."""
  name: str

  def __call__(self, prompts: Sequence[str], completions: Sequence[str],
               examples: Sequence[Example]) -> np.ndarray:
    ...


@dataclasses.dataclass(frozen=True, eq=False)
class TokenReward:
  """A numeric reward over token arrays, jitted once: `fn(tokens_NxC, mask_NxC, params) -> float32 [N]`.

  tokens are the sampled completion ids, mask marks the generated tokens (eos included), and params are
  whatever the reward scores with (a frozen model's params for a model-based reward, or None). No text is
  decoded, so a reward that only needs ids (or a model) never leaves the device's representation.
  """
  name: str
  fn: Callable[[Any, Any, Any], Any]
  params: Any = None

  def __post_init__(self):
    object.__setattr__(self, "_jitted", jax.jit(self.fn))

  def __call__(self, tokens_NxC, mask_NxC) -> np.ndarray:
    return np.asarray(self._jitted(tokens_NxC, mask_NxC, self.params), np.float32)


@dataclasses.dataclass(frozen=True)
class RolloutView:
  """What a `RolloutReward` may read of one round's N completions (prompt-major, as sampled)."""
  prompts: Sequence[str]  # the question as the rewards read it (format_prompt of Example.question)
  completions: Sequence[str]  # decoded up to eos
  examples: Sequence[Example]
  prompt_ids: Sequence[Sequence[int]]  # the prompt the policy read, token ids (a teacher's may hold the answer)
  tokens_NxC: np.ndarray  # sampled completion ids
  mask_NxC: np.ndarray  # the generated tokens, eos included
  logprobs_NxC: np.ndarray  # the sampler's log-probs of tokens_NxC at rl.temperature, 0 past the mask
  policy_params: Any = None  # the params that sampled this round


class RolloutReward:
  """A reward over a whole `RolloutView`, usually scored by models: subclass it and define `name` and `score`.

  `bind(mesh, vocab_size, load_frozen)` is called once by the trainer, after its mesh exists and before the first
  step, to load and place the models the reward scores with: `load_frozen(path, what) -> rr.train.frozen.Frozen`
  loads an rr workdir or a Hugging Face directory onto the run's mesh, checked against the run's tokenizer
  (`what` names the config key in its errors; rr.rewards sits below rr.train, so the trainer lends its loader).
  `score(view) -> float32 [N]`. A reward that keeps state
  across steps (an EMA baseline) also defines `state_dict()` / `load_state_dict(d)`, saved with each
  checkpoint's data state. A `metrics()` method returning {key: float} (the parts of its last score, say) is logged
  each step as train/rewards/<name>/<key>.
  """
  name: str = ""

  def bind(self, mesh, vocab_size: int, load_frozen=None) -> None:
    del mesh, vocab_size, load_frozen

  def score(self, view: RolloutView) -> np.ndarray:
    raise NotImplementedError

  def __call__(self, view: RolloutView) -> np.ndarray:
    return self.score(view)


@dataclasses.dataclass(frozen=True)
class RowReward:
  """A text reward made of a per-row function, so built-ins only say how to score one completion."""
  name: str
  score_row: Callable[[str, str, Example], float]

  def __call__(self, prompts, completions, examples) -> np.ndarray:
    return np.asarray([self.score_row(p, c, e) for p, c, e in zip(prompts, completions, examples, strict=True)],
                      np.float32)


class RewardFailure(NamedTuple):
  reward: str  # the reward's name
  row: int  # index into the batch
  error: str  # what went wrong, one line


def reward_name(reward_fn) -> str:
  """`reward_fn.name`, else the function's __name__, so plain user functions work too."""
  return getattr(reward_fn, "name", None) or getattr(reward_fn, "__name__", type(reward_fn).__name__)


def _error_text(exc: BaseException) -> str:
  return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:MAX_ERROR_CHARS]


def _as_rows(out, n: int) -> np.ndarray:
  """The reward's output as float32 [n]; ValueError naming the shape otherwise."""
  values = np.asarray(out, dtype=np.float32)
  if values.shape != (n,):
    raise ValueError(f"returned shape {values.shape}, expected ({n},): one float per completion")
  return values


def _call_rollout_reward(reward_fn: RolloutReward, view: RolloutView | None, n: int,
                         failures: list[RewardFailure]) -> tuple[np.ndarray, np.ndarray]:
  """One call for the whole round; if it raises (or gets no view), every row fails with the reason."""
  try:
    if view is None:
      raise ValueError("rollout rewards need the rollout (score_rewards(..., view=RolloutView(...)))")
    return _as_rows(reward_fn(view), n), np.ones(n, bool)
  except Exception as exc:  # pylint: disable=broad-except
    failures.extend(RewardFailure(reward_fn.name, i, _error_text(exc)) for i in range(n))
    return np.zeros(n, np.float32), np.zeros(n, bool)


def _call_rows(reward_fn, prompts, completions, examples, name: str,
               failures: list[RewardFailure]) -> tuple[np.ndarray, np.ndarray]:
  """Calls the reward on the whole batch; if that raises, row by row to find the rows that do.
  Returns (values [N], ok [N]) with failed rows at 0."""
  n = len(completions)
  try:
    return _as_rows(reward_fn(prompts, completions, examples), n), np.ones(n, bool)
  except Exception:  # pylint: disable=broad-except
    pass
  values, ok = np.zeros(n, np.float32), np.ones(n, bool)
  for i in range(n):
    try:
      values[i] = _as_rows(reward_fn(prompts[i:i + 1], completions[i:i + 1], examples[i:i + 1]), 1)[0]
    except Exception as exc:  # pylint: disable=broad-except
      ok[i] = False
      failures.append(RewardFailure(name, i, _error_text(exc)))
  return values, ok


def _call_token_reward(reward_fn: TokenReward, tokens_NxC, mask_NxC, n: int,
                       failures: list[RewardFailure]) -> tuple[np.ndarray, np.ndarray]:
  """One jitted call for the whole batch; if it raises (or gets no tokens), every row fails with the reason."""
  try:
    if tokens_NxC is None or mask_NxC is None:
      raise ValueError("token rewards need tokens_NxC and mask_NxC (the completions as ids)")
    return _as_rows(reward_fn(tokens_NxC, mask_NxC), n), np.ones(n, bool)
  except Exception as exc:  # pylint: disable=broad-except
    failures.extend(RewardFailure(reward_fn.name, i, _error_text(exc)) for i in range(n))
    return np.zeros(n, np.float32), np.zeros(n, bool)


def score_rewards(reward_fns: Sequence[TextReward | TokenReward], prompts: Sequence[str],
                  completions: Sequence[str], examples: Sequence[Example], *, tokens_NxC: np.ndarray | None = None,
                  mask_NxC: np.ndarray | None = None,
                  view: RolloutView | None = None) -> tuple[np.ndarray, np.ndarray, list[RewardFailure]]:
  """(rewards_NxK float32, valid_N bool, failures) for K text rewards on N completions; never raises for a
  reward's fault. A row is invalid if any reward raised or gave a non-finite value for it; invalid entries
  are 0 in rewards_NxK (mask them with valid_N, e.g. `normalize_then_sum(..., valid_N=valid_N)`).
  `TokenReward`s read `tokens_NxC` and `mask_NxC` (the completions as ids), `RolloutReward`s the `view`; if one of
  those raises, all its rows fail."""
  prompts, completions, examples = list(prompts), list(completions), list(examples)
  n = len(completions)
  if not len(prompts) == len(examples) == n:
    raise ValueError(f"score_rewards: {len(prompts)} prompts, {n} completions and {len(examples)} examples; "
                     "give one prompt and one example per completion (repeat them for G completions per prompt)")
  rewards_NxK = np.zeros((n, len(reward_fns)), np.float32)
  valid_N = np.ones(n, bool)
  failures: list[RewardFailure] = []
  for k, reward_fn in enumerate(reward_fns):
    name = reward_name(reward_fn)
    if isinstance(reward_fn, TokenReward):
      values, ok = _call_token_reward(reward_fn, tokens_NxC, mask_NxC, n, failures)
    elif isinstance(reward_fn, RolloutReward):
      values, ok = _call_rollout_reward(reward_fn, view, n, failures)
    else:
      values, ok = _call_rows(reward_fn, prompts, completions, examples, name, failures)
    for i in np.flatnonzero(ok & ~np.isfinite(values)):
      ok[i] = False
      failures.append(RewardFailure(name, int(i), f"returned {values[i]}"))
    rewards_NxK[:, k] = np.where(ok, values, 0.0)
    valid_N &= ok
  return rewards_NxK, valid_N, failures


def reward_metrics(reward_fns: Sequence[TextReward], rewards_NxK: np.ndarray,
                   valid_N: np.ndarray) -> dict[str, float]:
  """TRL-named `rewards/<name>/mean` and `/std` over the valid rows (the std with ddof 1, as TRL's nanstd; NaN
below two rows), plus `rewards/invalid_frac`."""
  rewards_NxK, valid_N = np.asarray(rewards_NxK), np.asarray(valid_N, bool)
  metrics = {"rewards/invalid_frac": float(1.0 - valid_N.mean()) if valid_N.size else 0.0}
  for k, reward_fn in enumerate(reward_fns):
    column = rewards_NxK[valid_N, k]
    name = reward_name(reward_fn)
    metrics[f"rewards/{name}/mean"] = float(column.mean()) if column.size else float("nan")
    metrics[f"rewards/{name}/std"] = float(column.std(ddof=1)) if column.size > 1 else float("nan")
  return metrics
