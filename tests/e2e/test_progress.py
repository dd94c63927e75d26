"""What a person watching a job sees (progress.py): in a log that is not a terminal, the start summary, progress lines
and no ANSI styles; on a terminal, tqdm's bar and each metric once. The metric definitions read back exactly the
metric lines of a whole job log, whatever else it carries."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from sm_train import cli
from sm_train.metrics import metric_definitions
from sm_train.progress import Progress
from sm_train.tasks import TASKS
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON
from tests.jobs import REPO, Job, assert_metric_lines_captured, job_env, make_tree, write_rows

ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(56)]
HPS = {"epochs": 2, "train_batch_size": 4, "per_device_eval_batch_size": 8, "eval_strategy": "epoch"}
STEPS = 24  # 48 rows, 4 per step, 2 epochs
PROGRESS = re.compile(
    rf"step (\d+)/{STEPS} \(\d+%\), epoch [0-9.]+, loss [0-9.]+, [0-9.]+ samples/s, elapsed \w+, ETA \w+$", re.M
)
# Always a progress line: no waiting for 30 s in a job of a few seconds.
SCRIPT = (
    "import sys; from sm_train import cli, progress; progress.Progress.INTERVAL_SECONDS = 0.0; "
    "sys.exit(cli.main(['train']))"
)


def tree(tmp_path: Path, encoder: Path, **hps: object) -> Job:
    train = write_rows(tmp_path / "data" / "train" / "t.jsonl", ROWS[:48]).parent
    evaluation = write_rows(tmp_path / "data" / "validation" / "v.jsonl", ROWS[48:]).parent
    return make_tree(
        tmp_path, {"model_name_or_path": str(encoder), **HPS, **hps}, {"train": train, "validation": evaluation}
    )


def assert_only_metric_lines_are_read(log: str) -> None:
    """Every regex of the metric definitions over every line of the log: it matches metric lines only, and reads
    back the value printed; every metric line is read by one of them."""
    definitions = metric_definitions(TASKS["text-classification"].metric_names)
    lines = log.splitlines()
    read = []
    for line in lines:
        for definition in definitions:
            found = re.search(definition["Regex"], line)
            if found:
                assert line == f"[metric] {definition['Name']} = {found[1]}", (definition["Name"], line)
                read.append(line)
    printed = [line for line in lines if line.startswith("[metric] ")]
    assert read == printed and printed


def assert_no_log_dict(log: str) -> None:
    """Trainer's own print of each log ({'loss': '0.6931', ...}) is gone: the metric lines say it once."""
    assert not re.search(r"\{'(loss|eval_loss|train_runtime)'", log), log[-3000:]


def test_a_job_log_shows_a_start_summary_and_progress_lines(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    monkeypatch.setattr(Progress, "INTERVAL_SECONDS", 0.0)
    job = tree(tmp_path, tiny_encoder)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 0, job.failure
    captured = capsys.readouterr()
    log = captured.out + captured.err
    for said in (
        f"training: {STEPS} optimizer steps in 2 epochs\n",
        "data: train 48 examples, eval 8 examples\n",
        "global batch 4 (4 per device x 1 device x 1 accumulation step), 1 process on 1 host\n",
        "device cpu, precision fp32\n",
        f"checkpoints: every 500 steps to {job.root / 'checkpoints'}, the newest 2 kept\n",
    ):
        assert said in captured.err
    assert [int(step) for step in PROGRESS.findall(captured.err)] == list(range(1, STEPS + 1))
    assert_no_log_dict(log)
    assert_only_metric_lines_are_read(log)
    assert_metric_lines_captured(captured.out, "text-classification")


def test_logging_strips_ansi_styles_off_a_terminal(monkeypatch) -> None:
    from transformers.utils import logging as hf_logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = root.handlers[:]
    # transformers writes through a handler of its own: the load report is one of its warnings
    library = next(h for h in logging.getLogger("transformers").handlers if type(h) is logging.StreamHandler)
    try:
        for stream, styled in ((io.StringIO(), False), (Terminal(), True)):
            monkeypatch.setattr(sys, "stderr", stream)
            previous = library.setStream(stream)
            monkeypatch.setattr(
                logging.getLogger("transformers"), "propagate", True
            )  # what transformers does under CI
            cli.setup_logging()
            logging.getLogger("sm_train.test").warning("\x1b[1mOur line\x1b[0m from: %s", "enc")
            hf_logging.get_logger("transformers.modeling_utils").warning("\x1b[1mBert LOAD REPORT\x1b[0m from: enc")
            library.setStream(previous)
            written = stream.getvalue()
            assert written.count("Our line") == 1 and written.count("Bert LOAD REPORT") == 1
            assert written.count("\x1b[1m") == (2 if styled else 0)  # kept on a terminal only
    finally:
        root.handlers[:] = saved


# --- in other processes: a real log file, a real terminal, transformers 4.x --------------------------------------


def run_job(python: Path, job: Job, terminal: bool = False, timeout: float = 600) -> tuple[int, str]:
    """The job in `python`, its output through a pipe or, with `terminal`, a pseudo-terminal (a 120-column one)."""
    env = job_env(job.root) | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'netguard'}"}
    command = [str(python), "-c", SCRIPT]
    if not terminal:
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
        return done.returncode, done.stdout + done.stderr
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], 1)[0]:
                continue
            try:
                data = os.read(main, 65536)
            except OSError:  # the job closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def assert_terminal_output(output: str) -> None:
    """One bar, each metric once, every metric line on a line of its own (the bar cleared before it), no progress
    lines (the bar is the progress)."""
    assert f"{STEPS}/{STEPS}" in output  # tqdm's bar
    assert_no_log_dict(output)
    pieces = re.split(r"[\r\n]+", output)
    assert all(piece.startswith("[metric] ") for piece in pieces if "[metric]" in piece), output[-3000:]
    assert sum(piece.startswith("[metric] train_runtime = ") for piece in pieces) == 1
    assert f"training: {STEPS} optimizer steps" in output and not PROGRESS.search(output.replace("\r", ""))


@pytest.mark.external
def test_a_job_log_file_has_no_ansi_styles_and_a_terminal_keeps_its_bar(tmp_path, tiny_encoder) -> None:
    job = tree(tmp_path / "file", tiny_encoder)
    code, log = run_job(Path(sys.executable), job)
    assert code == 0, log[-3000:]
    assert "LOAD REPORT" in log and "\x1b" not in log  # transformers 5 prints it in bold
    assert len(PROGRESS.findall(log)) == STEPS
    assert_only_metric_lines_are_read(log)

    code, output = run_job(Path(sys.executable), tree(tmp_path / "terminal", tiny_encoder), terminal=True)
    assert code == 0, output[-3000:]
    assert_terminal_output(output)


BUILD = "import sys; from pathlib import Path; from tests import tiny; tiny.build_encoder(Path(sys.argv[1]))"


@pytest.mark.external
def test_progress_on_transformers_4(tmp_path) -> None:
    """Trainer 4.x hands its loss over in another variable and draws the same bar."""
    env = job_env(tmp_path) | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'netguard'}"}
    subprocess.run([str(TF4_PYTHON), "-c", BUILD, str(tmp_path / "enc")], env=env, check=True, cwd=REPO)
    code, log = run_job(TF4_PYTHON, tree(tmp_path / "file", tmp_path / "enc"))
    assert code == 0, log[-3000:]
    assert f"training: {STEPS} optimizer steps in 2 epochs" in log
    assert len(PROGRESS.findall(log)) == STEPS
    assert_no_log_dict(log)
    assert_only_metric_lines_are_read(log)

    code, output = run_job(TF4_PYTHON, tree(tmp_path / "terminal", tmp_path / "enc"), terminal=True)
    assert code == 0, output[-3000:]
    assert_terminal_output(output)
