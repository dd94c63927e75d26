"""The gpu marker where torch sees no CUDA device (CUDA_VISIBLE_DEVICES empty, so this holds on a GPU machine too):
`pytest -m gpu` collects every GPU test, skips each one, prints why, and exits 0 (what make test-gpu does on CPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.jobs import REPO

GPU_TESTS = {
    "tests/gpu/test_bench.py::test_bench_on_the_gpu",
    "tests/gpu/test_jobs.py::test_a_tiny_job_per_task_with_the_gpu_defaults[question-answering]",
    "tests/gpu/test_jobs.py::test_a_tiny_job_per_task_with_the_gpu_defaults[summarization]",
    "tests/gpu/test_jobs.py::test_a_tiny_job_per_task_with_the_gpu_defaults[text-classification]",
    "tests/gpu/test_resume.py::test_sigterm_on_the_gpu_then_resume_gives_the_same_weights",
}


def test_without_cuda_every_gpu_test_is_listed_and_skipped_saying_why() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "tests/gpu"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = dict(line.split(" ", 2)[:2] for line in done.stdout.splitlines() if line.startswith("tests/gpu/"))
    assert set(results) == GPU_TESTS  # every GPU test listed, nothing else (this file's test is not marked gpu)
    assert set(results.values()) == {"SKIPPED"}, results
    # The summary (-ra) gives the reason of each skip.
    reasons = re.findall(r"^SKIPPED \[(\d+)\] tests/gpu/[\w.]+(?::\d+)?: (.+)$", done.stdout, flags=re.MULTILINE)
    assert sum(int(count) for count, _ in reasons) == len(GPU_TESTS), done.stdout[-3000:]
    assert {reason.split(" (")[0] for _, reason in reasons} == {
        "needs a CUDA GPU: torch.cuda.is_available() is false"
    }, reasons
