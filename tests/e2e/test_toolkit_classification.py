"""Text classification through the real SageMaker training toolkit (sagemaker-training + the PyTorch DLC launcher),
with hyperparameters.json encoded as SDK v2 does and the repository as source_dir."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from sm_train.metrics import metric_definitions
from sm_train.tasks import TASKS
from tests import tiny
from tests.e2e.conftest import serve
from tests.e2e.test_failures import bad, sentiment
from tests.jobs import Job, assert_fails, assert_metric_lines_captured, make_tree, run_toolkit, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

LEARN = {"learning_rate": 3e-3, "epochs": 10, "train_batch_size": 16, "logging_steps": 5, "seed": 1}
NOT_DEPLOYABLE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json")


@pytest.fixture(scope="module")
def csv_job(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Path, source: Path) -> Job:
    """String labels, custom column names, csv channels 'train' and 'test' (seed 000/002 use 'test')."""
    base = tmp_path_factory.mktemp("csv-job")
    write_rows(base / "train" / "train.csv", sentiment(200))
    write_rows(base / "test" / "test.csv", sentiment(40, seed=7))
    hps = {
        "model_name_or_path": str(tiny_encoder),
        "text_column": "review",
        "label_column": "sentiment",
        "output_dir": "/opt/ml/model",
        "hub_token": "hf_DoNotLeakThis",
        **LEARN,
    }
    return run_toolkit(make_tree(base, hps, {"train": base / "train", "test": base / "test"}, source=source))


def test_csv_job_succeeds_and_learns(csv_job: Job) -> None:
    assert csv_job.returncode == 0, csv_job.stdout[-4000:] + csv_job.log[-4000:]
    assert csv_job.failure is None
    results = csv_job.results()
    assert results["eval_accuracy"] >= 0.9
    assert results["train_samples"] == 200 and results["eval_samples"] == 40


def test_model_dir_is_flat_and_deployable(csv_job: Job) -> None:
    names = {p.name for p in csv_job.model_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "train_results.json",
        "eval_results.json",
        "all_results.json",
    } <= names
    # Flat but for the serving module and its settings (code/, which the inference toolkit imports from).
    assert [p.name for p in csv_job.model_dir.iterdir() if p.is_dir()] == ["code"]
    assert sorted(p.name for p in (csv_job.model_dir / "code").iterdir()) == ["inference.py", "serving.json"]
    assert not names & set(NOT_DEPLOYABLE)
    config = json.loads((csv_job.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    # Checkpoints went to the checkpoint dir, whatever output_dir said.
    assert list((csv_job.root / "checkpoints").glob("checkpoint-*"))


def test_outputs_data_dir_and_model_card(csv_job: Job) -> None:
    resolved = json.loads((csv_job.output_data_dir / "sm_train_config.json").read_text())
    assert resolved["versions"]["transformers"] and resolved["versions"]["torch"]
    assert resolved["task_facts"]["labels"] == ["neg", "pos"]
    assert (csv_job.output_data_dir / "eval_results.json").is_file()
    card = (csv_job.model_dir / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "## Evaluation results" in card
    assert "| Train rows: 200" in card.replace("- Train", "| Train") and "eval_accuracy" in card


def test_secrets_never_written_or_logged(csv_job: Job) -> None:
    written = "".join(
        p.read_text(errors="ignore")
        for p in (*csv_job.model_dir.rglob("*"), *csv_job.output_data_dir.iterdir())
        if p.suffix in (".json", ".md")
    )
    assert "hf_DoNotLeakThis" not in written
    checkpoint_files = [p for p in (csv_job.root / "checkpoints").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in checkpoint_files)
    assert not any(b"hf_DoNotLeakThis" in p.read_bytes() for p in checkpoint_files)
    # The toolkit itself echoes argv and SM_HPS; sm_train's own log lines must not.
    own_lines = [line for line in csv_job.log.splitlines() if " sm_train." in line]
    assert own_lines and not any("hf_DoNotLeakThis" in line for line in own_lines)


def test_metric_lines_match_the_published_definitions(csv_job: Job) -> None:
    definitions = metric_definitions(TASKS["text-classification"].metric_names)
    log = csv_job.stdout
    captured = {d["Name"]: re.findall(d["Regex"], log) for d in definitions}
    results = csv_job.results()
    assert float(captured["eval_accuracy"][-1]) == results["eval_accuracy"]
    assert float(captured["train_runtime"][-1]) == results["train_runtime"]
    assert captured["loss"] and captured["learning_rate"] and captured["epoch"]
    assert_metric_lines_captured(log, "text-classification")
    assert "\r" not in log
    # The seed notebooks' regex captures a plain number from the same lines.
    seed = re.findall(r"eval_accuracy.*=\D*(.*?)$", log, flags=re.MULTILINE)
    assert float(seed[-1]) == results["eval_accuracy"]


def test_saved_model_serves_user_labels(csv_job: Job) -> None:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(csv_job.model_dir))
    assert classify("the film was wonderful and superb")[0]["label"] == "pos"
    assert classify("an awful and boring plot")[0]["label"] == "neg"
    for without_code in (False, True):  # through the model dir's code/inference.py, and the toolkit's pipeline
        served = serve(csv_job.model_dir, {"inputs": "the film was wonderful and superb"}, pipeline=without_code)
        assert served["task"] == "text-classification"
        assert served["prediction"][0]["label"] == "pos"


def test_jsonl_integer_labels_default_columns(tmp_path: Path, tiny_encoder: Path, source: Path) -> None:
    rows = tiny.three_way(150)
    write_rows(tmp_path / "train" / "part-0.jsonl", rows[:120])
    write_rows(tmp_path / "validation" / "val.jsonl", rows[120:])
    hps = {"model_name_or_path": str(tiny_encoder), **LEARN, "epochs": 3, "max_eval_samples": 20}
    channels = {"train": tmp_path / "train", "validation": tmp_path / "validation"}
    job = run_toolkit(make_tree(tmp_path, hps, channels, source=source))
    assert job.returncode == 0, job.log[-4000:]
    config = json.loads((job.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1", "2": "2"}
    assert job.results()["eval_samples"] == 20


def test_parquet_text_pairs(tmp_path: Path, tiny_encoder: Path, source: Path) -> None:
    rows = [{"premise": t, "hypothesis": "the film", "verdict": label} for t, label in tiny.sentences(60)]
    write_rows(tmp_path / "train" / "train.parquet", rows[:48])
    write_rows(tmp_path / "validation" / "val.parquet", rows[48:])
    hps = {
        "model_name_or_path": str(tiny_encoder),
        "text_column": "premise",
        "text_pair_column": "hypothesis",
        "label_column": "verdict",
        "epochs": 1,
        "train-batch-size": 8,
        "evaluation_strategy": "epoch",
    }
    channels = {"train": tmp_path / "train", "validation": tmp_path / "validation"}
    job = run_toolkit(make_tree(tmp_path, hps, channels, source=source))
    assert job.returncode == 0, job.log[-4000:]
    assert set(job.results()) >= {"eval_accuracy", "eval_f1", "train_loss"}


def test_pretokenized_save_to_disk_channels(tmp_path: Path, tiny_encoder: Path, source: Path) -> None:
    """As seed 002's notebook uploads: tokenized datasets with input_ids, attention_mask and ClassLabel labels."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    features = Features(
        {
            "input_ids": Sequence(Value("int32")),
            "attention_mask": Sequence(Value("int8")),
            "labels": ClassLabel(names=["negative", "positive"]),
        }
    )
    for split, rows in (("train", tiny.sentences(48)), ("test", tiny.sentences(16, seed=3))):
        encoded = tokenizer([t for t, _ in rows], truncation=True)
        Dataset.from_dict(
            {**encoded, "labels": [int(label == "pos") for _, label in rows]}, features=features
        ).save_to_disk(str(tmp_path / split))
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1, "train_batch_size": 8}
    job = run_toolkit(
        make_tree(tmp_path, hps, {"train": tmp_path / "train", "test": tmp_path / "test"}, source=source)
    )
    assert job.returncode == 0, job.log[-4000:]
    assert "already tokenized" in job.log
    config = json.loads((job.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_missing_train_channel(tmp_path: Path, tiny_encoder: Path, source: Path) -> None:
    """The one failure through the toolkit: its exit code, the failure file and the traceback in its log (every
    failure reason is checked in-process, in tests/e2e/test_failures.py)."""
    hps, channels = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    job = run_toolkit(make_tree(tmp_path, hps, {"validation": channels["validation"]}, source=source))
    assert_fails(job, r"No training data: give the job a 'train' channel.*Channels present: validation")


def test_multi_label_csv_with_a_test_set(tmp_path: Path, tiny_encoder: Path, source: Path) -> None:
    """Through the toolkit: a CSV whose labels are JSON lists as text trains a multi-label model (problem_type read
    off them); the test channel beside validation is predicted row by row, its test_* lines read back by the
    metric definitions."""
    from tests.e2e.test_jobs import tags

    for split, rows in (("train", tags(48)), ("validation", tags(12, seed=1)), ("test", tags(10, seed=2))):
        write_rows(tmp_path / split / f"{split}.csv", [{**row, "label": json.dumps(row["label"])} for row in rows])
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1, "train_batch_size": 8}
    channels = {split: tmp_path / split for split in ("train", "validation", "test")}
    job = run_toolkit(make_tree(tmp_path, hps, channels, source=source))
    assert job.returncode == 0, job.log[-4000:]
    config = json.loads((job.model_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["id2label"]) == 3
    assert_metric_lines_captured(job.stdout, "text-classification")
    assert "[metric] test_f1_micro = " in job.stdout and job.results()["test_samples"] == 10
    written = (job.output_data_dir / "test_predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in written] == list(range(10))
