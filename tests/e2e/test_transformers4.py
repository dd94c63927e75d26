"""The same job on transformers 4.57 (older Deep Learning Containers): names translate the other way, it trains,
and the model it saves serves on the inference toolkit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import TF4_PYTHON, serve
from tests.jobs import REPO, job_env, make_tree, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

BUILD = "import sys; from pathlib import Path; from tests import tiny; tiny.build_encoder(Path(sys.argv[1]))"


def test_job_on_transformers_4(tmp_path: Path) -> None:
    env = job_env(tmp_path) | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'netguard'}"}
    subprocess.run([str(TF4_PYTHON), "-c", BUILD, str(tmp_path / "enc")], env=env, check=True, cwd=REPO)
    from tests import tiny

    rows = [{"text": t, "label": label} for t, label in tiny.sentences(64)]
    write_rows(tmp_path / "data" / "train" / "t.csv", rows[:48])
    write_rows(tmp_path / "data" / "validation" / "v.csv", rows[48:])
    hps = {
        "model_name_or_path": str(tmp_path / "enc"),
        "epochs": 1,
        "warmup_steps": 0.1,  # transformers 5 spelling of a ratio
        "train_sampling_strategy": "group_by_length",  # transformers 5 spelling
        "overwrite_output_dir": True,  # still a field on 4.x
        "eval_strategy": "epoch",
    }
    job = make_tree(
        tmp_path, hps, {"train": tmp_path / "data" / "train", "validation": tmp_path / "data" / "validation"}
    )
    done = subprocess.run(
        [str(TF4_PYTHON), "-m", "sm_train", "train"],
        env=job_env(job.root) | {"PYTHONPATH": env["PYTHONPATH"]},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    resolved = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert resolved["versions"]["transformers"].startswith("4.57")
    assert resolved["training_args"]["warmup_ratio"] == 0.1 and resolved["training_args"]["group_by_length"] is True
    assert "[metric] eval_accuracy = " in done.stdout
    assert not (job.model_dir / "training_args.bin").exists()
    settings = json.loads((job.model_dir / "code" / "serving.json").read_text())  # a job on 4.x writes them too
    assert settings["versions"]["transformers"] == resolved["versions"]["transformers"]
    for pipeline in (False, True):
        served = serve(job.model_dir, {"inputs": "a wonderful film"}, pipeline=pipeline)
        assert served["task"] == "text-classification" and served["prediction"][0]["label"] in ("neg", "pos")
