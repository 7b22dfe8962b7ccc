"""rr.files: run files on an object store through etils.epath, with local paths unchanged.

No test reaches GCS: `fake_gcs` serves gs:// from memory through fsspec (the backend epath picks for gs:// when
tensorflow is absent), so the same calls that would reach a bucket run here.
"""

import importlib
import json
import os

import pytest
from etils import epath
from etils.epath import backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from rr import files, main
from rr.config import load_config, read_run_config, run_config_files, save_run_config
from rr.errors import UserError
from rr.eval import report
from rr.train.metrics import MetricWriter, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT = os.path.join(ROOT, "configs", "sft.py")


class _MemoryGCS(MemoryFileSystem):
  """gs://bucket/key kept in a dict of this class alone."""
  protocol = ("gs", "gcs")
  store, pseudo_dirs = {}, [""]

  @classmethod
  def _strip_protocol(cls, path):
    return super()._strip_protocol(str(path).removeprefix("gs://"))


@pytest.fixture
def fake_gcs(monkeypatch, tmp_path):
  """gs:// in memory for this test; the working directory is an empty folder, to see that no local "gs:" appears."""
  monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
  for name in ("gs", "gcs"):  # fsspec's registry of implementations, restored after the test
    monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, name, _MemoryGCS)
  backend.fsspec_backend._get_filesystem.cache_clear()
  _MemoryGCS.store.clear()
  monkeypatch.chdir(tmp_path)
  yield _MemoryGCS.store
  backend.fsspec_backend._get_filesystem.cache_clear()
  assert not os.listdir(tmp_path)


def _write_run_files(workdir: str) -> None:
  """What a run writes and rewrites: config.json twice (the second config beside it), metrics rows, a resume that
  moves rows aside, a summary and curves."""
  config = load_config(f"{SFT}:runlocal")
  save_run_config(config, workdir)
  config.train.steps = 20
  save_run_config(config, workdir)
  writer = MetricWriter(workdir)
  writer.resume(None)
  for step in (2, 4, 6):
    writer.write(step, {"train/loss": 1.0 / step})
  writer.close()
  resumed = MetricWriter(workdir)
  resumed.resume(4)  # the checkpoint is step 4's: row 6 goes to metrics.dropped.jsonl
  resumed.write(4, {"train/loss": 0.3})  # logged again at the restored step: replaces the row
  resumed.write(6, {"train/loss": 0.1})
  resumed.write_summary({"step": 6, "finished": True})
  resumed.plot_curves(("train/loss",))
  resumed.close()


def test_run_files_on_gs_read_back_as_the_same_files_on_a_local_disk(fake_gcs, tmp_path_factory):
  local = str(tmp_path_factory.mktemp("local"))
  remote = "gs://bucket/runs/a"
  _write_run_files(local)
  _write_run_files(remote)
  names = ["config.json", "config.2.json", "metrics.jsonl", "metrics.dropped.jsonl", "summary.json"]
  for name in names:
    with open(os.path.join(local, name), encoding="utf-8") as f:
      assert files.read_text(f"{remote}/{name}") == f.read(), name
  assert read_metrics(f"{remote}/metrics.jsonl") == [{"step": 2, "train/loss": 0.5}, {"step": 4, "train/loss": 0.3},
                                                     {"step": 6, "train/loss": 0.1}]
  assert run_config_files(remote) == [f"{remote}/config.json", f"{remote}/config.2.json"]
  assert read_run_config(f"{remote}/config.2.json").train.steps == 20
  png = fake_gcs["/bucket/runs/a/curves.png"].getvalue()
  assert png.startswith(b"\x89PNG")
  events = [key for key in fake_gcs if key.startswith("/bucket/runs/a/tensorboard/events.out.tfevents")]
  assert len(events) == 1 and b"train/loss" in fake_gcs[events[0]].getvalue()  # the scalars, uploaded whole
  assert sorted(files.listdir(remote)) == sorted(names + ["curves.png", "tensorboard"])


def test_reports_on_gs_are_never_written_over(fake_gcs):
  out = "gs://bucket/eval"
  files.makedirs(out)
  report.write_json(f"{out}/eval.json", {"accuracy": float("nan"), "step": 3})
  assert json.loads(files.read_text(f"{out}/eval.json")) == {"accuracy": None, "step": 3}
  with pytest.raises(FileExistsError):
    report.write_json(f"{out}/eval.json", {"accuracy": 1.0})
  assert json.loads(files.read_text(f"{out}/eval.json"))["step"] == 3


def test_a_local_path_given_as_an_epath_is_a_local_run_directory(tmp_path):
  workdir = epath.Path(tmp_path) / "run"
  files.makedirs(workdir)
  path = save_run_config(load_config(f"{SFT}:runlocal"), workdir)
  assert path == os.path.join(tmp_path, "run", "config.json") and os.path.isfile(path)
  assert files.absolute(workdir) == str(workdir) and not files.is_uri(workdir)
  assert not [n for n in os.listdir(tmp_path / "run") if ".tmp." in n]  # the rename left no temporary file


def test_a_gs_workdir_without_gcsfs_is_one_error_naming_it_and_creates_no_local_folder(tmp_path, monkeypatch,
                                                                                       capsys):
  try:
    epath.Path("gs://rr-no-such-bucket/x").exists()
  except ImportError:
    pass
  else:
    pytest.skip("this Python has a gs:// backend (gcsfs or tensorflow)")
  monkeypatch.chdir(tmp_path)
  status = main.main(["--config", f"{SFT}:runlocal", "--workdir", "gs://rr-no-such-bucket/run"])
  err = capsys.readouterr().err
  assert status == 2
  assert "--workdir='gs://rr-no-such-bucket/run'" in err and "pip install gcsfs" in err
  assert not os.listdir(tmp_path)
  with pytest.raises(UserError, match="pip install gcsfs"):
    files.makedirs("gs://rr-no-such-bucket/run")
  assert not os.listdir(tmp_path)
