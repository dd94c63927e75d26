"""The same job on transformers 4.57 (older Deep Learning Containers): names translate the other way, it trains,
and the model it saves serves on the inference toolkit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import serve, tf4_encoder, tf4_job
from tests.jobs import make_tree, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)


def test_job_on_transformers_4(tmp_path: Path) -> None:
    tf4_encoder(tmp_path / "enc")
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
    done = tf4_job(job)
    resolved = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert resolved["training_args"]["warmup_ratio"] == 0.1 and resolved["training_args"]["group_by_length"] is True
    assert "[metric] eval_accuracy = " in done.stdout
    assert not (job.model_dir / "training_args.bin").exists()
    settings = json.loads((job.model_dir / "code" / "serving.json").read_text())  # a job on 4.x writes them too
    assert settings["versions"]["transformers"] == resolved["versions"]["transformers"]
    for pipeline in (False, True):
        served = serve(job.model_dir, {"inputs": "a wonderful film"}, pipeline=pipeline)
        assert served["task"] == "text-classification" and served["prediction"][0]["label"] in ("neg", "pos")
