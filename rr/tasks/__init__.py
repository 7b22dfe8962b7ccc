"""Generated reasoning tasks: examples with teacher rationales, answer verifiers and step checkers."""

from __future__ import annotations

from rr.tasks.addition import AdditionTask
from rr.tasks.base import (SPLITS, TEST_FRACTION, Example, Task, TaskError, make_split, rationale_steps,
                           split_of)
from rr.tasks.countdown import CountdownTask
from rr.tasks.strings import StringsTask

TASKS: dict[str, Task] = {task.name: task for task in (AdditionTask(), CountdownTask(), StringsTask())}


def get_task(name: str) -> Task:
  """The task family called `name`; TaskError naming the choices otherwise."""
  if name not in TASKS:
    raise TaskError(f"unknown task {name!r} (config.data.task); choose one of {sorted(TASKS)}")
  return TASKS[name]


__all__ = ["AdditionTask", "CountdownTask", "Example", "SPLITS", "StringsTask", "TASKS", "TEST_FRACTION", "Task",
           "TaskError", "get_task", "make_split", "rationale_steps", "split_of"]
