"""uploads.py: a job whose source_dir carries local run trees or virtualenvs warns, naming them; looked for two
folders deep only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sm_train import cli, local_tree
from sm_train.uploads import clutter, warn_uploaded_clutter


def source_dir(code: Path) -> Path:
    """A clone as users upload it, with a venv, local runs of an older version, and a venv too deep to look for."""
    for folder in ("sm_train", "scripts", ".git/objects/ab", ".sm_train/20250101-120000/model", "deep/a/b"):
        (code / folder).mkdir(parents=True)
    (code / ".venv").mkdir()
    (code / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (code / ".sm_train" / "20250101-120000" / local_tree.MARKER).write_text(local_tree.MARKER_TEXT)
    (code / "envs" / "py311").mkdir(parents=True)
    (code / "envs" / "py311" / "pyvenv.cfg").write_text("")
    (code / "deep" / "a" / "b" / "pyvenv.cfg").write_text("")  # three folders down: not looked for
    return code


def test_local_run_trees_and_venvs_are_named(tmp_path) -> None:
    assert clutter(source_dir(tmp_path / "code")) == [
        ".venv (a virtualenv)",
        ".sm_train/20250101-120000 (a local run tree)",
        "envs/py311 (a virtualenv)",
    ]
    assert clutter(tmp_path / "code" / "sm_train") == []


def test_the_job_warns_where_it_starts(tmp_path, monkeypatch, capsys) -> None:
    """The container or toolkit unpacked source_dir into <root>/code; the job running there warns once (here a job
    without data: it fails after the warning)."""
    source_dir(tmp_path / "code")
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"model_name_or_path": "m"}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert cli.main(["train"]) != 0
    [record] = [line for line in capsys.readouterr().err.splitlines() if "WARNING sm_train.uploads" in line]
    assert f"source_dir (unpacked in {tmp_path / 'code'}) holds .venv (a virtualenv), " in record
    assert ".sm_train/20250101-120000 (a local run tree)" in record
    assert "uploaded to S3 with the code and unpacked into every job" in record


def test_no_warning_for_a_clean_source_dir(tmp_path, caplog) -> None:
    (tmp_path / "code" / "scripts").mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        warn_uploaded_clutter(tmp_path / "code")
        warn_uploaded_clutter(tmp_path / "missing")
    assert caplog.records == []
