"""Offline, single-threaded, network-guarded test environment and shared fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before torch is imported: two torch threads on a 2-core machine make a tiny step ~200x slower under load.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
os.environ.update(OFFLINE_ENV)
NETGUARD = Path(__file__).parent / "netguard"
sys.path.insert(0, str(NETGUARD))
import pytest  # noqa: E402
import sitecustomize  # noqa: E402,F401  - installs the network guard in this process

from tests import tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT base model with its tokenizer, built offline."""
    return tiny.build_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR of the test (and of an in-process job): model archives unpack below it, in sm_train-models."""
    import tempfile

    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory / "sm_train-models"


@pytest.fixture(autouse=True)
def _no_sagemaker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start outside SageMaker whatever the shell exported."""
    for name in list(os.environ):
        if name.startswith("SM_") or name in ("SAGEMAKER_BASE_DIR", "TRAINING_JOB_NAME"):
            monkeypatch.delenv(name)


def no_gpu_reason() -> str | None:
    """Why tests marked gpu cannot run here, or None where torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"needs a CUDA GPU: torch.cuda.is_available() is false (torch {torch.__version__}, {build})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked gpu are skipped, with the reason, where torch sees no CUDA device: the suite still lists them."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    reason = no_gpu_reason() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))
