"""Benchmark: a job's peak memory and wall time as the training set grows (text classification, a tiny model).

For each row count, writes a CSV of short sentences, runs `python -m sm_train train` on an /opt/ml tree
(max_steps=1, save_strategy=no, so preprocessing dominates) and reports the job's peak RSS (exact, from wait4) and its
wall time, then the ratios between the largest and the smallest size: linear growth gives ratios near the row ratio
for time and well below it for memory (a fixed base plus memory-mapped Arrow). With --trace, each line the job logs
is printed with the job's RSS at that moment, to find the phase that holds memory.

    python scripts/bench_scale.py [--rows 100000 500000] [--trace] [--hp group_by_length=true]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import tiny  # noqa: E402
from tests.jobs import job_env, make_tree  # noqa: E402


def write_csv(path: Path, rows: int) -> None:
    """`rows` sentences like the tests' (4-12 words, two labels), written without holding them all as dicts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pool = tiny.sentences(5000)
    with path.open("w", encoding="utf-8") as f:
        f.write("text,label\n")
        for i in range(rows):
            text, label = pool[i % len(pool)]
            f.write(f"{text},{label}\n")


def run(root: Path, trace: bool) -> tuple[float, float]:
    """(peak RSS in MB of the job's largest process, wall seconds)."""
    import psutil

    env = job_env(root) | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "sm_train", "train"], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    watched = psutil.Process(process.pid)
    output: list[str] = []

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line)
            if trace:
                try:
                    rss = watched.memory_info().rss / 2**20
                except psutil.Error:
                    rss = float("nan")
                print(f"  {time.perf_counter() - began:7.1f}s {rss:7.0f} MB | {line.rstrip()[:150]}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    reader.join(timeout=5)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.stdout.write("".join(output[-40:]))
        raise SystemExit("the job failed")
    return usage.ru_maxrss / 1024, seconds  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--trace", action="store_true", help="print each log line with the job's RSS then")
    parser.add_argument("--hp", action="append", default=[], help="extra hyperparameter name=value (JSON value)")
    options = parser.parse_args()
    extra = {}
    for item in options.hp:
        name, _, value = item.partition("=")
        try:
            extra[name] = json.loads(value)
        except json.JSONDecodeError:
            extra[name] = value
    base = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    encoder = tiny.build_encoder(base / "encoder")
    figures = []
    for rows in options.rows:
        where = base / f"rows-{rows}"
        write_csv(where / "data" / "train.csv", rows)
        hps = {"model_name_or_path": str(encoder), "max_steps": 1, "save_strategy": "no", **extra}
        job = make_tree(where, hps, {"train": where / "data"})
        rss, seconds = run(job.root, options.trace)
        figures.append((rows, rss, seconds))
        print(f"{rows:>9,} rows: peak RSS {rss:7.0f} MB, {seconds:6.1f} s", flush=True)
    (small, rss0, t0), (large, rss1, t1) = figures[0], figures[-1]
    if large != small:
        print(f"x{large / small:g} rows: RSS x{rss1 / rss0:.2f} (+{rss1 - rss0:.0f} MB), time x{t1 / t0:.2f}")
    print(f"(files in {base})")


if __name__ == "__main__":
    main()
