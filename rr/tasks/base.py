"""What every task family shares: the Example record, the Task protocol and the train/test split.

A task generates examples with a program-written ("teacher") rationale, verifies a student's answer, checks
each step of a student's rationale and whether the steps form a whole chain (docs/methods.md, "Scoring"), and
says what an answer means for a majority vote. The split of a question is a pure function of an md5 hash of its text, so
train and test never share a question whatever the seeds and sizes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Protocol, runtime_checkable

import numpy as np

from rr.errors import UserError

TEST_FRACTION = 0.1  # share of the question space that belongs to the test split
SPLITS = ("train", "test")
STALL_DRAWS = 10_000  # make_split gives up after this many draws in a row bring no new question


class TaskError(UserError, ValueError):
  """A task name, difficulty or split size cannot be served; the message says what would work."""


@dataclasses.dataclass(frozen=True)
class Example:
  question: str  # e.g. "478+256"
  rationale: str  # steps separated by "\n", written by a program (the embedded teacher)
  answer: str  # canonical answer text, e.g. "734"
  difficulty: int = 0
  task: str = ""  # family name, "" for user data
  meta: tuple = ()  # task-specific hashable data the verifier / step checker need (e.g. operands)


@runtime_checkable
class Task(Protocol):
  name: str

  def generate(self, rng: np.random.Generator, difficulty: int) -> Example:
    ...

  def verify(self, answer_text: str, example: Example) -> bool:
    """True iff the answer is right; never raises on junk."""
    ...

  def check_steps(self, rationale: str, example: Example) -> list[bool]:
    """One bool per step written (non-empty line); never raises."""
    ...

  def check_chain(self, rationale: str, example: Example) -> bool:
    """True iff the rationale is a whole right chain: every step the task needs is written and right, and
    nothing else is written (a right prefix is not a chain); never raises."""
    ...

  def step_score(self, rationale: str, example: Example) -> float:
    """Right steps over the steps a whole chain needs (at least those written), in [0, 1]: missing steps
    count as wrong ones, so writing less never scores more. 1.0 exactly when check_chain holds."""
    ...

  def vote_key(self, answer_text: str, example: Example) -> str:
    """What the answer means, for maj@k: two answers with one key get one vote and the same verdict from
    `verify`. Never raises."""
    ...


def share_right(steps: list[bool], needed: int) -> float:
  """Right steps / max(steps written, steps needed): a missing step counts as a wrong one; 0.0 for nothing."""
  total = max(len(steps), needed)
  return sum(steps) / total if total else 0.0


def whole_chain(steps: list[bool], needed: int) -> bool:
  """Exactly the `needed` steps, all right: a fixed-length chain with no step missing and none extra."""
  return bool(steps) and len(steps) == needed and all(steps)


def text_key(answer_text) -> str:
  """The vote key of an answer a task cannot read as a value: its whitespace-normalised text, marked so that
  it never equals the key of a readable answer."""
  return "text:" + " ".join(str(answer_text).split())


def rationale_steps(rationale: str) -> list[str]:
  """The steps a rationale writes: its non-empty lines, stripped of surrounding whitespace."""
  if not isinstance(rationale, str):
    return []
  return [line.strip() for line in rationale.split("\n") if line.strip()]


def question_bucket(question: str) -> float:
  """A stable number in [0, 1) from the md5 of the question text (Python's hash() is salted per process)."""
  digest = hashlib.md5(question.encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of(question: str) -> str:
  """'test' for about TEST_FRACTION of all questions, 'train' for the rest; the same in every process."""
  return "test" if question_bucket(question) < TEST_FRACTION else "train"


def make_split(task: Task | str, split: str, size: int, difficulty: int, seed: int,
               difficulty_max: int = 0) -> list[Example]:
  """`size` examples with distinct questions that all belong to `split`, in generation order.

  difficulty_max > difficulty mixes levels: each draw's level is uniform over difficulty..difficulty_max, so a
  level whose question space is smaller than its share (1-digit addition has 100 questions) gives all it has
  and the other levels fill the rest; each Example records its own level. Deterministic in (task, split, size,
  difficulty, difficulty_max, seed); a smaller size gives a prefix of a larger one. One level (difficulty_max 0
  or = difficulty) draws exactly what it always drew. Stops after 100 * size + 1000 draws, or STALL_DRAWS draws
  in a row without a new question of this split, so it terminates on a small question space: then raises
  TaskError saying how many were found.
  """
  if isinstance(task, str):
    from rr.tasks import get_task  # the registry lives in the package; imported late to avoid a cycle
    task = get_task(task)
  if split not in SPLITS:
    raise TaskError(f"split={split!r}: choose one of {SPLITS}")
  if size < 0:
    raise TaskError(f"split size must be >= 0, got {size}")
  if difficulty_max and difficulty_max < difficulty:
    raise TaskError(f"difficulty_max={difficulty_max} is below difficulty={difficulty}: pass 0 for one level, or "
                    "the highest level to draw")
  mixed = difficulty_max > difficulty
  rng = np.random.default_rng([seed, difficulty, difficulty_max] if mixed else [seed, difficulty])
  max_draws = 100 * size + 1000
  seen: set[str] = set()
  examples: list[Example] = []
  draws = stalled = 0
  while len(examples) < size and draws < max_draws and stalled < STALL_DRAWS:
    draws += 1
    stalled += 1
    level = int(rng.integers(difficulty, difficulty_max + 1)) if mixed else difficulty
    example = task.generate(rng, level)
    if example.question in seen or split_of(example.question) != split:
      continue
    seen.add(example.question)
    examples.append(example)
    stalled = 0
  if len(examples) < size:
    levels = f"difficulties {difficulty}..{difficulty_max}" if mixed else f"difficulty {difficulty}"
    raise TaskError(
        f"task {task.name!r} at {levels}: found only {len(examples)} distinct {split} questions "
        f"in {draws} draws, but {size} were asked for; the question space is too small. Lower the split "
        f"size (config.data.train_size / config.data.test_size) or raise config.data.difficulty"
        + (" or config.data.difficulty_max" if mixed else ""))
  return examples
