"""e2e fixtures and helpers: the repository as source_dir, and serving a saved model on transformers 4.x."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.jobs import REPO, Job, job_env, source_tarball

TF4_PYTHON = Path(os.environ.get("SM_TRAIN_TF4_PYTHON", REPO / ".venv-tf4" / "bin" / "python"))
TF4_PATH = f"{REPO}:{REPO / 'tests' / 'netguard'}"  # the repository and the network guard, for the 4.x venv


def tf4_encoder(directory: Path) -> Path:
    """tests/tiny.py's encoder, built and saved by transformers 4.x."""
    build = "import sys; from pathlib import Path; from tests import tiny; tiny.build_encoder(Path(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": TF4_PATH}
    subprocess.run([str(TF4_PYTHON), "-c", build, str(directory)], env=env, check=True, cwd=REPO)
    return directory


def tf4_job(job: Job) -> subprocess.CompletedProcess[str]:
    """`python -m sm_train train` on the job's tree in the transformers 4.x venv: it exits 0, having run on 4.57."""
    done = subprocess.run(
        [str(TF4_PYTHON), "-m", "sm_train", "train"],
        env=job_env(job.root) | {"PYTHONPATH": TF4_PATH},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    resolved = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert resolved["versions"]["transformers"].startswith("4.57")
    return done


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
