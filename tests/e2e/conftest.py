"""e2e fixtures and helpers: the repository as source_dir, and serving a saved model on transformers 4.x."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.jobs import REPO, source_tarball

TF4_PYTHON = Path(os.environ.get("SM_TRAIN_TF4_PYTHON", REPO / ".venv-tf4" / "bin" / "python"))


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as the SageMaker SDK uploads source_dir."""
    return source_tarball(tmp_path_factory.mktemp("source"))


def serve(
    model_dir: Path, payload: dict[str, Any], hf_task: str | None = None, pipeline: bool = False
) -> dict[str, Any]:
    """Load and query the model dir with the SageMaker Hugging Face inference toolkit on transformers 4.x: through
    its code/inference.py, or with `pipeline` without it (the toolkit's own pipeline, as it serves other models)."""
    assert TF4_PYTHON.exists(), f"{TF4_PYTHON} is missing: `make test` installs the inference environment"
    task = [hf_task] if hf_task else []
    flags = ["--pipeline"] if pipeline else []
    done = subprocess.run(
        [str(TF4_PYTHON), str(REPO / "tests" / "deploy_check.py"), *flags, str(model_dir), json.dumps(payload), *task],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SM_", "PYTHON"))},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
