"""scripts/bench.py --device cuda, once: every approach trains on the GPU in one run (the floor in the precision
sm_train picks, the seed baseline, sm_train with its defaults and with fp16=true), batches pad to multiples of 64, and
each ratio is against the floor and the seed baseline of the same run. Timings are never asserted. The table and the
JSON are kept in the folder GPU_CHECK_OUT names (scripts/gpu_check.sh sets it), else dropped with the test's
temporary folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs import REPO

pytestmark = pytest.mark.gpu

# BERT-base's shape and 3000 rows: the figures compare with the H100 measurements the README's Performance cites.
ARGS = ("--device", "cuda", "--size", "base", "--rows", "3000")


def test_bench_on_the_gpu(tmp_path: Path) -> None:
    import torch

    out = Path(os.environ.get("GPU_CHECK_OUT") or tmp_path).resolve()  # bench.py runs in tmp_path
    out.mkdir(parents=True, exist_ok=True)
    figures = out / "bench.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), *ARGS, "--json", str(figures)],
        capture_output=True, text=True, timeout=480, cwd=tmp_path,
    )  # fmt: skip
    (out / "bench.txt").write_text(done.stdout + done.stderr[-4000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(figures.read_text())
    assert report["machine"]["device"] == torch.cuda.get_device_name()
    assert report["settings"]["device"] == "cuda" and report["settings"]["pad_multiple"] == 64
    rows = report["throughput"]["rows"]
    assert list(rows) == ["floor", "seed", "sm_train", "sm_train_fp16"]
    assert rows["floor"]["label"].endswith("bf16" if torch.cuda.is_bf16_supported() else "fp16")  # as sm_train's
    for name, row in rows.items():
        assert row["samples_per_second"] > 0, name
        assert abs(row["vs_floor"] - row["samples_per_second"] / rows["floor"]["samples_per_second"]) < 1e-9
        assert abs(row["vs_seed"] - row["samples_per_second"] / rows["seed"]["samples_per_second"]) < 1e-9
    assert rows["floor"]["padded_tokens_per_row"] < 256  # length-grouped batches, each padded to a multiple of 64
    assert "/ floor" in done.stdout and "sm_train fp16=true" in done.stdout
