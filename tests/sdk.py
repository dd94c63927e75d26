"""The README's launch code, run offline by each SageMaker SDK in a venv of its own (.venv-sdk2, .venv-sdk3: `make
install-sdk`), and what it sent: the CreateTrainingJob requests and the files it uploaded (tests/sdk_run.py)."""

from __future__ import annotations

import atexit
import functools
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
        uris = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
        return self.uploaded(uris[name])


def clone(directory: Path) -> Path:
    """A clean clone of the repository (what the README tells users to point source_dir at)."""
    ignore = shutil.ignore_patterns("__pycache__")
    for name in SOURCE_FILES:
        source, target = REPO / name, directory / name
        shutil.copytree(source, target, ignore=ignore) if source.is_dir() else shutil.copy(source, target)
    return directory


@functools.cache
def launch(tag: str) -> Launch:
    """Run the README's ```python <tag> blocks with the SDK's own venv, in a folder holding the clone as sm-train."""
    python = SDK_PYTHON[tag]
    assert python.exists(), f"{python} is missing: `make install-sdk` (make test) installs the SDK venvs"
    base = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    clone(base / "sm-train")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "AWS_", "PYTHON", "SAGEMAKER"))}
    done = subprocess.run(
        [str(python), str(REPO / "tests" / "sdk_run.py"), str(README), tag, str(base / "out")],
        cwd=base,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return Launch(base / "out", json.loads((base / "out" / "calls.json").read_text()))
