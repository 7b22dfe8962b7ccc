"""Runs a notebook of experiments/ top to bottom in a fresh kernel, with test-sized parameters, so it never rots.

A notebook marks one cell with the tag "parameters" (papermill's convention); `run_notebook` inserts a cell of
assignments right after it, runs every cell with nbclient and returns the executed notebook. The repository
holds notebooks without outputs (`assert_clean`), so a diff shows code, not stale results.
"""

from __future__ import annotations

import os

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name: str) -> nbformat.NotebookNode:
  return nbformat.read(os.path.join(ROOT, "experiments", name), as_version=4)


def assert_clean(notebook: nbformat.NotebookNode) -> None:
  """No outputs and no execution counts in the repository's copy, and exactly one parameters cell."""
  code = [c for c in notebook.cells if c.cell_type == "code"]
  assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "notebook holds outputs"
  tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(tagged) == 1, f"{len(tagged)} cells are tagged 'parameters'; a notebook needs exactly one"


def run_notebook(name: str, parameters: dict, cwd: str, timeout: int = 600) -> nbformat.NotebookNode:
  """Executes experiments/<name> in `cwd` with `parameters` assigned after its parameters cell; raises
  nbclient's CellExecutionError (with the cell and its traceback) when a cell fails."""
  from nbclient import NotebookClient

  notebook = load(name)
  assert_clean(notebook)
  index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
  lines = [f"{key} = {value!r}" for key, value in parameters.items()]
  injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": ["injected-parameters"]})
  notebook.cells.insert(index + 1, injected)
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, (ROOT, env.get("PYTHONPATH", ""))))  # rr without pip install
  client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}})
  client.execute(env=env)
  return notebook


def outputs_text(notebook: nbformat.NotebookNode) -> str:
  """Every stream and text/plain output of the executed notebook, joined: what a reader sees printed."""
  parts = []
  for cell in notebook.cells:
    for out in cell.get("outputs", []):
      if out.get("output_type") == "stream":
        parts.append(out.get("text", ""))
      elif "data" in out and "text/plain" in out["data"]:
        parts.append(out["data"]["text/plain"])
  return "\n".join(parts)


def has_image(notebook: nbformat.NotebookNode) -> bool:
  return any("image/png" in out.get("data", {}) for c in notebook.cells for out in c.get("outputs", []))
