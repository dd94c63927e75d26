"""The README's launch code, run offline by each SageMaker SDK in a venv of its own (.venv-sdk2, .venv-sdk3: `make
install-sdk`), and what it sent: the CreateTrainingJob requests and the files it uploaded (tests/sdk_run.py). It runs
in a folder holding what a notebook's folder would: the clone (sm-train) and the data folders the README's launches
upload, holding the example rows of its "Your data" tables (DATA)."""

from __future__ import annotations

import atexit
import csv
import functools
import io
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.jobs import REPO, SOURCE_FILES

SDK_PYTHON = {
    "sdk-v2": Path(os.environ.get("SM_TRAIN_SDK2_PYTHON", REPO / ".venv-sdk2" / "bin" / "python")),
    "sdk-v3": Path(os.environ.get("SM_TRAIN_SDK3_PYTHON", REPO / ".venv-sdk3" / "bin" / "python")),
}
# The README holds the launch code in blocks tagged ```python sdk-v2 / ```python sdk-v3 (tests/sdk_run.py finds them).
README = Path(os.environ.get("SM_TRAIN_README", REPO / "README.md"))

# The README's "Your data" tables: each task's dataset folder (data/<dataset>/<channel>/), its file format and rows.
DATA: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    "text-classification": (
        "reviews",
        "csv",
        [
            {"review": "A gripping, beautifully shot thriller.", "sentiment": "positive"},
            {"review": "Two hours I will never get back.", "sentiment": "negative"},
        ],
    ),
    "question-answering": (
        "squad",
        "jsonl",
        [
            {
                "id": "q1",
                "question": "Where is the Eiffel Tower?",
                "context": "The Eiffel Tower is in Paris.",
                "answers": {"text": ["Paris"], "answer_start": [23]},
            },
            {
                "id": "q2",
                "question": "When was it built?",
                "context": "It was built from 1887 to 1889.",
                "answers": {"text": ["from 1887 to 1889"], "answer_start": [13]},
            },
        ],
    ),
    "summarization": (
        "dialogsum",
        "jsonl",
        [
            {
                "dialogue": "#Person1#: Can we meet at three? #Person2#: Three works for me.",
                "summary": "They will meet at three.",
            },
            {
                "dialogue": "#Person1#: Did you book the flight? #Person2#: Yes, it leaves at nine.",
                "summary": "The flight is booked for nine.",
            },
        ],
    ),
}
CHANNELS = ("train", "validation")


@dataclass
class Launch:
    """What one SDK sent for the README's blocks, in order."""

    out: Path
    calls: list[dict[str, Any]]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["operation"] == "CreateTrainingJob"]

    def uploaded(self, s3_uri: str) -> Path:
        """Where the files the SDK uploaded to s3_uri lie here."""
        return self.out / "s3" / s3_uri.removeprefix("s3://")

    def channel(self, request: dict[str, Any], name: str) -> Path:
        return self.uploaded(self.channel_uris(request)[name])

    @staticmethod
    def channel_uris(request: dict[str, Any]) -> dict[str, str]:
        return {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}

    def put_before(self, request: dict[str, Any]) -> list[str]:
        """The S3 URIs of the objects uploaded before the request was sent."""
        end = next(
            i for i, c in enumerate(self.calls) if c["operation"] == "CreateTrainingJob" and c["params"] == request
        )
        puts = [c["params"] for c in self.calls[:end] if c["operation"] == "PutObject"]
        return [f"s3://{p['Bucket']}/{p['Key']}" for p in puts]


def data_file(rows: list[dict[str, Any]], kind: str) -> str:
    """The rows as the file the README's table describes: CSV with a header row, or JSON lines."""
    if kind == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def write_data(directory: Path) -> None:
    """The local folders the README's launches upload: data/<dataset>/<channel>/<channel>.<format>."""
    for dataset, kind, rows in DATA.values():
        for channel in CHANNELS:
            path = directory / dataset / channel / f"{channel}.{kind}"
            path.parent.mkdir(parents=True)
            path.write_text(data_file(rows, kind))


def clone(directory: Path) -> Path:
    """A clean clone of the repository (what the README tells users to point source_dir at)."""
    ignore = shutil.ignore_patterns("__pycache__")
    for name in SOURCE_FILES:
        source, target = REPO / name, directory / name
        shutil.copytree(source, target, ignore=ignore) if source.is_dir() else shutil.copy(source, target)
    return directory


def run_blocks(tag: str, readme: Path, base: Path) -> subprocess.CompletedProcess[str]:
    """Run the ```python <tag> blocks of readme with the SDK's own venv, in base: a folder holding the clone as
    sm-train and the data folders; what the SDK sent goes to base/out."""
    python = SDK_PYTHON[tag.split("+")[0]]  # "sdk-v3+tune-v3": the sdk-v3 setup, then the tuning blocks
    assert python.exists(), f"{python} is missing: `make install-sdk` (make test) installs the SDK venvs"
    clone(base / "sm-train")
    write_data(base / "data")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AWS_", "PYTHON", "SAGEMAKER"))}
    return subprocess.run(
        [str(python), str(REPO / "tests" / "sdk_run.py"), str(readme), tag, str(base / "out")],
        cwd=base,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@functools.cache
def launch(tag: str) -> Launch:
    """What the README's ```python <tag> blocks sent, run once per test session."""
    base = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    done = run_blocks(tag, README, base)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return Launch(base / "out", json.loads((base / "out" / "calls.json").read_text()))
