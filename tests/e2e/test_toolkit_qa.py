"""Extractive question answering through the real SageMaker toolkit: flat jsonl, nested SQuAD v1.1 and v2.0, all
with contexts longer than max_seq_length, learning an easy task and deploying."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sm_train.metrics import metric_definitions
from sm_train.tasks import TASKS
from tests import tiny
from tests.e2e.conftest import serve
from tests.jobs import Job, assert_fails, assert_metric_lines_captured, make_tree, run_toolkit, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

WINDOWS = {"max_seq_length": 64, "doc_stride": 24}
LEARN = {
    "task": "question-answering",
    **WINDOWS,
    "learning_rate": 1e-3,
    "epochs": 4,
    "train_batch_size": 16,
    "seed": 3,
}
PROBE = {
    "question": tiny.QUESTION,
    "context": "the film was quite the story and purple music with the cast",
}  # in-vocabulary filler


def answer(model_dir: Path, question: str, context: str) -> str:
    """What the saved model answers, loaded with the Auto classes (transformers 5 has no QA pipeline)."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    inputs = tokenizer(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")[0]
    in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])
    with torch.no_grad():
        output = model(**inputs)
    # The best span that lies in the context and does not end before it starts.
    scores = output.start_logits[0][:, None] + output.end_logits[0][None, :]
    valid = torch.triu(in_context[:, None] & in_context[None, :])
    start, end = divmod(int(scores.masked_fill(~valid, float("-inf")).argmax()), scores.shape[1])
    return context[int(offsets[start][0]) : int(offsets[end][1])]


@pytest.fixture(scope="module")
def jsonl_job(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Job:
    base = tmp_path_factory.mktemp("qa-jsonl")
    encoder = tiny.build_encoder(base / "encoder")
    write_rows(base / "train" / "train.jsonl", tiny.qa_rows(240))
    write_rows(base / "validation" / "dev.jsonl", tiny.qa_rows(40, seed=5))
    hps = {"model_name_or_path": str(encoder), **LEARN}
    job = make_tree(base, hps, {"train": base / "train", "validation": base / "validation"}, source=source)
    return run_toolkit(job)


def test_flat_jsonl_learns(jsonl_job: Job) -> None:
    assert jsonl_job.returncode == 0, jsonl_job.log[-4000:]
    results = jsonl_job.results()
    assert results["eval_exact_match"] >= 80 and results["eval_f1"] >= 80
    assert results["eval_samples"] == 40  # questions, not windows


def test_predictions_are_written_in_dataset_order(jsonl_job: Job) -> None:
    predictions = json.loads((jsonl_job.output_data_dir / "eval_predictions.json").read_text())
    nbest = json.loads((jsonl_job.output_data_dir / "eval_nbest_predictions.json").read_text())
    expected = tiny.qa_rows(40, seed=5)
    assert list(predictions) == [r["id"] for r in expected]
    correct = sum(predictions[r["id"]] == r["answers"]["text"][0] for r in expected)
    assert correct >= 32
    assert all(len(candidates) <= 20 for candidates in nbest.values())


def test_metric_lines_have_exact_match_and_f1(jsonl_job: Job) -> None:
    names = {d["Name"]: d["Regex"] for d in metric_definitions(TASKS["question-answering"].metric_names)}
    results = jsonl_job.results()
    for name in ("eval_exact_match", "eval_f1"):
        assert float(re.findall(names[name], jsonl_job.stdout)[-1]) == results[name]
    assert_metric_lines_captured(jsonl_job.stdout, "question-answering")


def test_saved_model_answers_with_auto_classes_and_the_inference_toolkit(jsonl_job: Job) -> None:
    assert answer(jsonl_job.model_dir, **PROBE) == "purple"
    served = serve(jsonl_job.model_dir, {"inputs": PROBE})  # through the model dir's code/inference.py
    assert served["task"] == "question-answering"
    assert served["prediction"]["answer"] == "purple"
    assert PROBE["context"][served["prediction"]["start"] : served["prediction"]["end"]] == "purple"
    served = serve(jsonl_job.model_dir, {"inputs": PROBE}, pipeline=True)  # the 4.x toolkit's pipeline, without it
    assert served["task"] == "question-answering"
    assert served["prediction"]["answer"].strip() == "purple"


def test_nested_squad_v1_with_seed_004_hyperparameters(tmp_path: Path, source: Path) -> None:
    encoder = tiny.build_encoder(tmp_path / "encoder")
    for split, rows in (("train", tiny.qa_rows(240)), ("test", tiny.qa_rows(30, seed=6))):
        (tmp_path / split).mkdir()
        (tmp_path / split / f"{split}-v1.1.json").write_text(json.dumps(tiny.squad_nested(rows)))
    # As seed 004 passes them (run_qa.py's names), plus the toy-size windows.
    hps = {"task": "question-answering", "model_name_or_path": str(encoder), **WINDOWS, "pad_to_max_length": True,
           "max_steps": 90, "do_train": True, "do_eval": True, "fp16": True, "output_dir": "/opt/ml/model",
           "per_device_train_batch_size": 16, "learning_rate": 1e-3, "seed": 3}  # fmt: skip
    job = run_toolkit(
        make_tree(tmp_path, hps, {"train": tmp_path / "train", "test": tmp_path / "test"}, source=source)
    )
    assert job.returncode == 0, job.log[-4000:]
    assert job.results()["eval_f1"] >= 60
    assert answer(job.model_dir, **PROBE) == "purple"


def test_nested_squad_v2_with_unanswerable_questions(tmp_path: Path, source: Path) -> None:
    encoder = tiny.build_encoder(tmp_path / "encoder")
    for split, rows in (
        ("train", tiny.qa_rows(300, unanswerable_every=4)),
        ("validation", tiny.qa_rows(40, 7, unanswerable_every=4)),
    ):
        (tmp_path / split).mkdir()
        (tmp_path / split / "squad-v2.0.json").write_text(json.dumps(tiny.squad_nested(rows, version_2=True)))
    hps = {"model_name_or_path": str(encoder), **LEARN, "version_2_with_negative": True, "epochs": 5}
    job = run_toolkit(
        make_tree(tmp_path, hps, {"train": tmp_path / "train", "validation": tmp_path / "validation"}, source=source)
    )
    assert job.returncode == 0, job.log[-4000:]
    results = job.results()
    assert results["eval_HasAns_total"] == 30 and results["eval_NoAns_total"] == 10
    assert results["eval_HasAns_f1"] >= 60 and results["eval_NoAns_exact"] >= 60 and results["eval_f1"] >= 60
    assert_metric_lines_captured(job.stdout, "question-answering")  # with the HasAns_*/NoAns_* metrics
    served = serve(job.model_dir, {"inputs": PROBE})  # the module applies the job's no-answer rule
    assert served["prediction"]["answer"] == "purple"


def test_doc_stride_without_room_fails_before_training(tmp_path: Path, source: Path) -> None:
    """The one failure through the toolkit (checked in-process too, in tests/e2e/test_failures.py)."""
    encoder = tiny.build_encoder(tmp_path / "encoder")
    write_rows(tmp_path / "train" / "t.jsonl", tiny.qa_rows(8))
    hps = {"model_name_or_path": str(encoder), **LEARN, "doc_stride": 60}
    job = run_toolkit(make_tree(tmp_path, hps, {"train": tmp_path / "train"}, source=source))
    assert_fails(job, r"doc_stride=60 leaves no room for the question")


@pytest.mark.slow
def test_distributed_evaluation_keeps_dataset_order(tmp_path: Path, source: Path) -> None:
    """torchrun with 2 CPU processes (the toolkit's torch_distributed launcher): the evaluation windows are split
    over the ranks, gathered back, and every prediction still lands on its own question, rank 0 printing once."""
    encoder = tiny.build_encoder(tmp_path / "encoder")
    expected = tiny.qa_rows(41, seed=5)  # an odd count: the last batch is uneven across ranks
    write_rows(tmp_path / "train" / "t.jsonl", tiny.qa_rows(240))
    write_rows(tmp_path / "validation" / "v.jsonl", expected)
    hps = {"model_name_or_path": str(encoder), **LEARN, "train_batch_size": 8, "per_device_eval_batch_size": 3,
           "use_cpu": True}  # fmt: skip
    distributed = {"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    channels = {"train": tmp_path / "train", "validation": tmp_path / "validation"}
    job = run_toolkit(make_tree(tmp_path, hps, channels, source=source, extra=distributed))
    assert job.returncode == 0, job.log[-4000:]
    assert "torchrun --nnodes 1 --nproc_per_node 2" in job.log
    predictions = json.loads((job.output_data_dir / "eval_predictions.json").read_text())
    assert list(predictions) == [r["id"] for r in expected]
    assert sum(predictions[r["id"]] == r["answers"]["text"][0] for r in expected) >= 37
    assert job.stdout.count("[metric] eval_f1 = ") == 1
