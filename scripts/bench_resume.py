"""Benchmark: time from process start to the first training step, cold start vs a resumed spot attempt.

A dataset where tokenization dominates (many rows, a tiny model). The cold attempt tokenizes and caches; the
resumed attempt (same checkpoint dir, fresh model dir, as SageMaker restarts a spot job) loads the cached tokens and
the newest checkpoint. Both run here, side by side, as `python -m sm_train` processes; the ratio is printed.

    python scripts/bench_resume.py [--rows 300000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import tiny  # noqa: E402
from tests.jobs import job_env, make_tree, write_rows  # noqa: E402

MARK = "first training step of this attempt done"


def attempt(root: Path) -> float:
    """Seconds from process start until the first training step is logged; the job then runs to its end."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "sm_train", "train"], env=job_env(root), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    first = None
    for line in process.stdout:  # type: ignore[union-attr]
        if first is None and MARK in line:
            first = time.perf_counter() - began
    if process.wait() != 0 or first is None:
        raise SystemExit(f"the job failed (exit {process.returncode})")
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    try:
        encoder = tiny.build_encoder(base / "encoder")
        texts = tiny.sentences(2000)
        rows = [{"text": f"{texts[i % 2000][0]} {texts[(i * 7) % 2000][0]}", "label": texts[i % 2000][1]}
                for i in range(options.rows)]  # fmt: skip
        write_rows(base / "data" / "train.csv", rows)
        hps = {"model_name_or_path": str(encoder), "max_steps": 2, "save_steps": 1, "train_batch_size": 8}
        job = make_tree(base, hps, {"train": base / "data"})
        cold = attempt(job.root)
        shutil.rmtree(job.model_dir)
        job.model_dir.mkdir()
        job = make_tree(base, {**hps, "max_steps": 4}, {"train": base / "data"})
        resumed = attempt(job.root)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"rows: {options.rows}")
    print(f"cold start to first step:        {cold:.1f} s")
    print(f"resumed attempt to first step:   {resumed:.1f} s")
    print(f"ratio resumed / cold:            {resumed / cold:.2f}  (goal <= 0.3)")


if __name__ == "__main__":
    main()
