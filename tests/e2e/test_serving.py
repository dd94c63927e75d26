"""Served equals evaluated: a tiny job per task leaves a model dir whose code/inference.py answers the job's own
evaluation examples as the job's evaluation did. In-process on transformers 5.x, driven as the inference toolkit
drives it (model_fn, then input_fn -> predict_fn -> output_fn with JSON bytes in and out); and through the real
SageMaker Hugging Face inference toolkit's handler service on transformers 4.57 (`.venv-tf4`, marked external)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sm_train import cli
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON
from tests.jobs import REPO, Job, make_tree, write_rows

QA = {"task": "question-answering", "max_seq_length": 64, "doc_stride": 24, "version_2_with_negative": True,
      "learning_rate": 1e-3, "epochs": 5, "train_batch_size": 16, "eval_batch_size": 5, "seed": 3}  # fmt: skip
SUMMARIZE = {"task": "summarization", "max_source_length": 64, "max_target_length": 16, "epochs": 4,
             "learning_rate": 3e-3, "train_batch_size": 16, "eval_batch_size": 4, "seed": 1}  # fmt: skip
CLASSIFY = {"learning_rate": 3e-3, "epochs": 8, "train_batch_size": 16, "per_device_eval_batch_size": 4, "seed": 1}


def run_job(base: Path, hps: dict[str, Any], train: list[dict], evaluation: list[dict], test: list[dict] = ()) -> Job:
    """An in-process job; a test channel when `test` has rows (its predictions: test_predictions.jsonl)."""
    splits = {"train": train, "validation": evaluation, "test": test}
    channels = {name: write_rows(base / name / f"{name}.jsonl", rows).parent for name, rows in splits.items() if rows}
    job = make_tree(base, hps, channels)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
        job.returncode = cli.main(["train"])
    assert job.returncode == 0, job.failure
    return job


@pytest.fixture(scope="module")
def classification(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path) -> tuple[Job, list[dict]]:
    """Single-label, with a test set: its rows are what is served."""
    base = tmp_path_factory.mktemp("serve-classify")
    rows = [{"text": text, "label": label} for text, label in tiny.sentences(200)]
    hps = {"model_name_or_path": str(tiny_encoder), **CLASSIFY}
    return run_job(base, hps, rows[:160], rows[160:180], rows[180:]), rows[180:]


def labelled(kind: str, n: int, seed: int) -> list[dict]:
    """Multi-label rows (the sentiment, and "film" when the text names it) or regression rows (a number from it)."""
    rows = []
    for text, label in tiny.sentences(n, seed=seed):
        tags = [label, *(["film"] if "film" in text.split() else [])]
        rows.append({"text": text, "label": tags if kind == "multi" else (1.5 if label == "pos" else -0.5)})
    return rows


@pytest.fixture(scope="module", params=["multi", "regression"])
def problem(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path):
    """A multi-label or regression job (problem_type read off the labels) with a test set: its rows are served."""
    base = tmp_path_factory.mktemp(f"serve-{request.param}")
    hps = {"model_name_or_path": str(tiny_encoder), **CLASSIFY}
    test = labelled(request.param, 12, 3)
    return run_job(base, hps, labelled(request.param, 200, 1), labelled(request.param, 12, 2), test), test


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, list[dict]]:
    base = tmp_path_factory.mktemp("serve-qa")
    encoder = tiny.build_encoder(base / "encoder")
    evaluation = tiny.qa_rows(24, seed=5, unanswerable_every=3)
    train = tiny.qa_rows(300, unanswerable_every=3)
    return run_job(base, {"model_name_or_path": str(encoder), **QA}, train, evaluation), evaluation


@pytest.fixture(scope="module")
def t5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, list[dict]]:
    base = tmp_path_factory.mktemp("serve-t5")
    model = tiny.build_seq2seq(base / "t5", "t5")
    evaluation = tiny.dialogues(12, seed=5)
    return run_job(base, {"model_name_or_path": str(model), **SUMMARIZE}, tiny.dialogues(160), evaluation), evaluation


def load_module(model_dir: Path) -> Any:
    """The model dir's code/inference.py imported from its file, as the toolkit imports it (one module per dir)."""
    spec = importlib.util.spec_from_file_location(
        f"inference_{abs(hash(model_dir))}", model_dir / "code" / "inference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Endpoint:
    """A model dir served in-process as the toolkit serves it: model_fn once, then each JSON request through
    input_fn, predict_fn and output_fn."""

    def __init__(self, model_dir: Path) -> None:
        self.module = load_module(model_dir)
        self.model = self.module.model_fn(str(model_dir))

    def __call__(self, request: dict[str, Any]) -> Any:
        data = self.module.input_fn(json.dumps(request).encode(), "application/json")
        body = self.module.output_fn(self.module.predict_fn(data, self.model), "application/json")
        return json.loads(body)


def toolkit(model_dir: Path, *requests: dict[str, Any], **env: str) -> dict[str, Any]:
    """The requests sent through the real inference toolkit on transformers 4.57, the endpoint's environment
    variables `env` set: {"task", "module", "responses"}."""
    assert TF4_PYTHON.exists(), f"{TF4_PYTHON} is missing: `make test` installs the inference environment"
    done = subprocess.run(
        [str(TF4_PYTHON), str(REPO / "tests" / "deploy_check.py"), "--each", str(model_dir), json.dumps(requests)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SM_", "PYTHON", "SAGEMAKER_"))} | env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_every_model_dir_has_the_module_and_its_settings(classification, qa, t5) -> None:
    source = (REPO / "sm_train" / "serving" / "inference.py").read_bytes()
    for job, _ in (classification, qa, t5):
        code = job.model_dir / "code"
        assert (code / "inference.py").read_bytes() == source
        assert sorted(p.name for p in code.iterdir()) == ["inference.py", "serving.json"]  # no requirements.txt
    settings = json.loads((qa[0].model_dir / "code" / "serving.json").read_text())
    assert {k: settings[k] for k in ("task", "max_seq_length", "doc_stride", "version_2_with_negative")} == {
        "task": "question-answering", "max_seq_length": 64, "doc_stride": 24, "version_2_with_negative": True
    }  # fmt: skip
    assert json.loads((t5[0].model_dir / "code" / "serving.json").read_text())["prefix"] == "summarize: "


def argmax_labels(model_dir: Path, texts: list[str]) -> list[str]:
    """The model's own labels: each text alone through the Auto classes, the argmax of its logits."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = [model(**tokenizer(text, return_tensors="pt")).logits[0].numpy() for text in texts]
    return [model.config.id2label[int(np.argmax(row))] for row in logits]


def predictions_of(job: Job) -> list[dict[str, Any]]:
    lines = (job.output_data_dir / "test_predictions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_classification_serves_the_models_labels(classification) -> None:
    job, rows = classification
    texts = [row["text"] for row in rows]
    served = Endpoint(job.model_dir)({"inputs": texts})
    assert [answer["label"] for answer in served] == argmax_labels(job.model_dir, texts)
    assert [answer["label"] for answer in served] == [row["label"] for row in predictions_of(job)]
    assert {answer["label"] for answer in served} == {"neg", "pos"}
    ranked = Endpoint(job.model_dir)({"inputs": texts[0], "parameters": {"top_k": 2}})
    assert [r["label"] for r in ranked][0] == served[0]["label"] and len(ranked) == 2


def test_regression_and_multi_label_serve_the_jobs_test_predictions(problem) -> None:
    job, rows = problem
    predicted = predictions_of(job)
    served = Endpoint(job.model_dir)({"inputs": [row["text"] for row in rows]})
    if "score" in predicted[0]:  # regression
        assert json.loads((job.model_dir / "config.json").read_text())["problem_type"] == "regression"
        assert [answer["score"] for answer in served] == pytest.approx([row["score"] for row in predicted], abs=1e-5)
        return
    assert [[a["label"] for a in labels] for labels in served] == [[a["label"] for a in row["labels"]]
                                                                   for row in predicted]  # fmt: skip
    assert len({tuple(a["label"] for a in labels) for labels in served}) > 1  # not one answer for every text
    scores = [a["score"] for labels in served for a in labels]
    assert scores == pytest.approx([a["score"] for row in predicted for a in row["labels"]], abs=1e-5)


def qa_inputs(rows: list[dict]) -> list[dict[str, str]]:
    return [{"question": row["question"], "context": row["context"]} for row in rows]


def test_question_answering_serves_the_jobs_predictions(qa) -> None:
    job, rows = qa
    predictions = json.loads((job.output_data_dir / "eval_predictions.json").read_text())
    nbest = json.loads((job.output_data_dir / "eval_nbest_predictions.json").read_text())
    served = Endpoint(job.model_dir)({"inputs": qa_inputs(rows)})
    assert [answer["answer"] for answer in served] == [predictions[row["id"]] for row in rows]
    assert "" in predictions.values() and set(predictions.values()) != {""}  # the no-answer rule both ways
    for row, answer in zip(rows, served, strict=True):
        if answer["answer"]:
            best = nbest[row["id"]][0]
            assert answer["score"] == pytest.approx(best["score"], abs=1e-5)
            assert (answer["start"], answer["end"]) == (best["start"], best["end"])
            assert row["context"][answer["start"] : answer["end"]] == answer["answer"]
    one = Endpoint(job.model_dir)({"inputs": qa_inputs(rows)[0]})
    assert one == served[0]


def test_summarization_serves_the_jobs_summaries_with_the_t5_prefix(t5) -> None:
    job, rows = t5
    generated = (job.output_data_dir / "generated_predictions.txt").read_text().splitlines()
    served = Endpoint(job.model_dir)({"inputs": [row["dialogue"] for row in rows]})
    assert [summary["summary_text"] for summary in served] == generated
    shorter = Endpoint(job.model_dir)({"inputs": rows[0]["dialogue"], "parameters": {"max_new_tokens": 2}})
    assert len(shorter) == 1 and len(shorter[0]["summary_text"].split()) <= 2


@pytest.mark.external
def test_the_real_toolkit_on_transformers_4_serves_what_the_jobs_evaluated(classification, qa, t5) -> None:
    job, rows = classification
    texts = [row["text"] for row in rows]
    bad = {"inputs": [{"text_pair": "no text"}]}
    served = toolkit(job.model_dir, {"inputs": texts}, bad)
    assert served["task"] == "text-classification" and served["module"]
    good, refused = served["responses"]
    assert [answer["label"] for answer in good["body"]] == argmax_labels(job.model_dir, texts)
    assert refused == {"status": 400, "body": 'inputs[0] has no "text".'}

    job, rows = qa
    predictions = json.loads((job.output_data_dir / "eval_predictions.json").read_text())
    served = toolkit(job.model_dir, {"inputs": qa_inputs(rows)}, {"inputs": {"question": "what color is it?"}})
    good, refused = served["responses"]
    assert served["task"] == "question-answering" and good["status"] == 200
    assert [answer["answer"] for answer in good["body"]] == [predictions[row["id"]] for row in rows]
    assert refused == {"status": 400, "body": 'inputs has no "context".'}

    job, rows = t5
    generated = (job.output_data_dir / "generated_predictions.txt").read_text().splitlines()
    served = toolkit(job.model_dir, {"inputs": [row["dialogue"] for row in rows]})
    assert [summary["summary_text"] for summary in served["responses"][0]["body"]] == generated


@pytest.mark.external
def test_the_real_toolkit_serves_regression_and_multi_label_as_the_job_predicted(problem) -> None:
    job, rows = problem
    predicted = predictions_of(job)
    (served,) = toolkit(job.model_dir, {"inputs": [row["text"] for row in rows]})["responses"]
    if "score" in predicted[0]:
        assert [a["score"] for a in served["body"]] == pytest.approx([row["score"] for row in predicted], abs=1e-5)
    else:
        labels = [[a["label"] for a in row["labels"]] for row in predicted]
        assert [[a["label"] for a in one] for one in served["body"]] == labels


@pytest.mark.external
def test_the_toolkit_finds_the_module_only_by_a_name(classification) -> None:
    """SDK v2 sends SAGEMAKER_PROGRAM empty for a model without entry_point: the toolkit then looks for a module named
    "" and serves its own pipeline. Named (the README's SDK v2 example) or unset (the default, inference.py), it
    serves code/inference.py."""
    job, _ = classification
    request = {"inputs": "a wonderful film"}
    assert toolkit(job.model_dir, request, SAGEMAKER_PROGRAM="inference.py")["module"] is True
    assert toolkit(job.model_dir, request)["module"] is True
    assert toolkit(job.model_dir, request, SAGEMAKER_PROGRAM="")["module"] is False
