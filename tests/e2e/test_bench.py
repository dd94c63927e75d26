"""scripts/bench.py runs end to end on CPU with a tiny model: the table and the JSON hold every row. Timings are
never asserted; only that each figure exists and the ratios are consistent with the samples/s. Without --json it
writes nothing: no bench.json in the working directory or the clone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs import REPO

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)


def bench(tmp_path: Path, *argv: str) -> tuple[str, dict]:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--device", "cpu", "--size", "tiny", *argv],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    written = tmp_path / "figures.json"
    return done.stdout, json.loads(written.read_text()) if written.exists() else {}


def test_throughput_table_and_json(tmp_path: Path) -> None:
    stdout, report = bench(tmp_path, "--rows", "400", "--json", "figures.json")
    rows = report["throughput"]["rows"]
    assert list(rows) == ["floor", "seed", "sm_train"]  # fp16 is a GPU-only row
    for name, row in rows.items():
        assert row["samples_per_second"] > 0, name
        assert abs(row["vs_floor"] - row["samples_per_second"] / rows["floor"]["samples_per_second"]) < 1e-9
        assert abs(row["vs_seed"] - row["samples_per_second"] / rows["seed"]["samples_per_second"]) < 1e-9
    assert rows["seed"]["padded_tokens_per_row"] == 256
    assert rows["floor"]["padded_tokens_per_row"] < 256  # length-grouped, padded to each batch's longest row
    assert report["settings"]["pad_multiple"] is None  # CPU: exact dynamic padding, as sm_train decides
    assert 35 <= report["throughput"]["token_lengths"]["median"] <= 55

    # The table comes last: a header line, then one line per row with samples/s and both ratios.
    last = stdout.strip().splitlines()[-3:]
    for line, name in zip(last, ("floor", "seed", "sm_train"), strict=True):
        assert line.startswith(rows[name]["label"])
        speed, vs_floor, vs_seed = line[len(rows[name]["label"]) :].split()[:3]
        assert float(speed) == round(rows[name]["samples_per_second"], 1)
        assert float(vs_floor) == round(rows[name]["vs_floor"], 2)
        assert float(vs_seed) == round(rows[name]["vs_seed"], 2)
    assert "/ floor" in stdout and "/ seed" in stdout


def test_startup(tmp_path: Path) -> None:
    stdout, report = bench(tmp_path, "--only", "startup", "--rows", "200", "--repeat", "1", "--json", "figures.json")
    startup = report["startup"]
    assert startup["bare_trainer_seconds"] > 0 and startup["sm_train_seconds"] > 0
    assert abs(startup["ratio"] - startup["sm_train_seconds"] / startup["bare_trainer_seconds"]) < 1e-9
    assert "throughput" not in report
    assert stdout.strip().splitlines()[-1].startswith(f"  ratio sm_train / bare {startup['ratio']:6.2f}")


def test_scale_without_json_writes_nothing(tmp_path: Path) -> None:
    clone_had_json = (REPO / "bench.json").exists()
    stdout, report = bench(tmp_path, "--only", "scale", "--scale-rows", "500,1000")
    assert report == {} and list(tmp_path.iterdir()) == [] and "figures written" not in stdout
    assert (REPO / "bench.json").exists() == clone_had_json
    *runs, last = stdout.strip().splitlines()[-3:]
    for line, rows in zip(runs, ("500", "1000"), strict=True):
        name, first_step, wall, rss = line.split()
        assert name == rows and float(rss) > 0 and float(wall) >= float(first_step) > 0
    assert re.fullmatch(r"time ratio \d+\.\d\d for 2x the rows \(goal: peak RSS < 2048 MB\)", last)


def test_jobs_keep_the_pythonpath_and_cpu_hides_the_gpu(monkeypatch) -> None:
    """The jobs bench.py starts find packages where this process does (make test-gpu unpacks wheels into a folder on
    PYTHONPATH), after the offline guard; --device cpu hides any GPU from them."""
    import argparse

    from scripts.bench import child_env
    from tests.jobs import job_env

    monkeypatch.setenv("PYTHONPATH", "/somewhere/site")
    for device, hidden in (("cpu", True), ("cuda", False)):
        env = child_env(Path("/opt/ml"), argparse.Namespace(device=device), Path("/cache"))
        assert env["PYTHONPATH"].split(":") == [job_env(Path("/opt/ml"))["PYTHONPATH"], "/somewhere/site"]
        assert (env.get("CUDA_VISIBLE_DEVICES") == "") is hidden


def test_device_cuda_without_a_gpu_says_so(tmp_path: Path) -> None:
    import os

    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--device", "cuda", "--size", "tiny"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode != 0 and "--device cuda: torch sees no CUDA device" in done.stderr
    assert list(tmp_path.iterdir()) == []
