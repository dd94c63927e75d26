"""Whole jobs run in-process (fast): task behaviour and train/eval switches (failures: tests/e2e/test_failures.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from sm_train import cli
from tests import tiny
from tests.jobs import Job, make_tree, write_rows

FAST = {"epochs": 1, "train_batch_size": 8, "per_device_eval_batch_size": 8}


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hps: dict[str, Any], channels: dict) -> Job:
    job = make_tree(tmp_path, hps, channels)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    return job


def channels(tmp_path: Path, train: list[dict] | None, evaluation: list[dict] | None = None) -> dict[str, Path]:
    found = {}
    for name, rows in (("train", train), ("validation", evaluation)):
        if rows is not None:
            found[name] = write_rows(tmp_path / "data" / name / f"{name}.jsonl", rows).parent
    return found


ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(24)]


def test_class_label_names_from_a_saved_dataset(tmp_path, monkeypatch, tiny_encoder) -> None:
    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["bad", "good"])})
    rows = [{"sentence": r["text"], "label": int(r["label"] == "pos")} for r in ROWS]
    DatasetDict({"train": Dataset.from_list(rows, features=features)}).save_to_disk(str(tmp_path / "saved"))
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), **FAST}, {"train": tmp_path / "saved"})
    assert job.returncode == 0, job.failure
    assert json.loads((job.model_dir / "config.json").read_text())["id2label"] == {"0": "bad", "1": "good"}
    assert not (job.model_dir / "eval_results.json").exists()  # no evaluation data, no evaluation


@pytest.mark.parametrize("labels", [(1, 2), ("neg", "pos")])
def test_pretokenized_labels_are_mapped_to_ids(tmp_path, monkeypatch, tiny_encoder, labels) -> None:
    """Pre-tokenized rows keep their input_ids; their labels still become ids 0..n-1 (label 2 of 2 would crash)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    rows = [{**tokenizer(r["text"]), "label": labels[r["label"] == "pos"]} for r in ROWS]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), **FAST}, {"train": tmp_path / "saved"})
    assert job.returncode == 0, job.failure
    id2label = json.loads((job.model_dir / "config.json").read_text())["id2label"]
    assert id2label == {"0": str(labels[0]), "1": str(labels[1])}


def test_evaluation_only_job(tmp_path, monkeypatch, tiny_encoder) -> None:
    hps = {"model_name_or_path": str(tiny_encoder), "do_train": False, **FAST}
    job = run(tmp_path, monkeypatch, hps, channels(tmp_path, ROWS, ROWS[:8]))
    assert job.returncode == 0, job.failure
    assert (job.model_dir / "eval_results.json").is_file() and not (job.model_dir / "train_results.json").exists()
    assert job.results()["eval_samples"] == 8


def test_do_eval_false_skips_evaluation(tmp_path, monkeypatch, tiny_encoder) -> None:
    hps = {"model_name_or_path": str(tiny_encoder), "do_eval": "false", **FAST}
    job = run(tmp_path, monkeypatch, hps, channels(tmp_path, ROWS, ROWS[:8]))
    assert job.returncode == 0 and not (job.model_dir / "eval_results.json").exists()


def test_hub_dataset_code_path_with_a_local_dataset(tmp_path, monkeypatch, tiny_encoder) -> None:
    write_rows(tmp_path / "hub" / "train.csv", ROWS)
    write_rows(tmp_path / "hub" / "validation.csv", ROWS[:6])
    hps = {"model_name_or_path": str(tiny_encoder), "dataset_name": str(tmp_path / "hub"), **FAST}
    job = run(tmp_path, monkeypatch, hps, {})
    assert job.returncode == 0, job.failure
    assert job.results()["train_samples"] == 24 and job.results()["eval_samples"] == 6


def test_the_model_channel_is_the_default_model(tmp_path, monkeypatch, tiny_encoder) -> None:
    job = run(tmp_path, monkeypatch, FAST, {**channels(tmp_path, ROWS), "model": tiny_encoder})
    assert job.returncode == 0, job.failure


def test_argv_outside_sagemaker(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """Local runs: no hyperparameters.json, argv is the source, paths follow SAGEMAKER_BASE_DIR."""
    train = channels(tmp_path, ROWS)["train"]
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "ml"))
    argv = ["--model_name_or_path", str(tiny_encoder), "--train_file", str(train), "--epochs", "1", "--fp16", "False"]
    assert cli.main(["train", *argv]) == 0
    assert (tmp_path / "ml" / "model" / "model.safetensors").is_file()
    assert "[metric] train_loss = " in capsys.readouterr().out


def test_question_answering_from_csv_with_parallel_preprocessing(tmp_path, monkeypatch) -> None:
    """Answers as JSON text in a csv, num_proc=2 workers for the windows, and a generate-free summarization eval."""
    encoder = tiny.build_encoder(tmp_path / "encoder")
    rows = [{**r, "answers": json.dumps(r["answers"])} for r in tiny.qa_rows(40)]
    write_rows(tmp_path / "data" / "train" / "train.csv", rows)
    hps = {"task": "question-answering", "model_name_or_path": str(encoder), "max_seq_length": 64,
           "doc_stride": 24, "num_proc": 2, **FAST}  # fmt: skip
    job = run(
        tmp_path, monkeypatch, hps, {"train": tmp_path / "data" / "train", "validation": tmp_path / "data" / "train"}
    )
    assert job.returncode == 0, job.failure
    assert job.results()["eval_samples"] == 40 and "eval_f1" in job.results()


def test_summarization_without_generate_keeps_token_ids(tmp_path, monkeypatch) -> None:
    model = tiny.build_seq2seq(tmp_path / "bart")
    write_rows(tmp_path / "data" / "train" / "t.jsonl", tiny.dialogues(16))
    hps = {"task": "summarization", "model_name_or_path": str(model), "predict_with_generate": False,
           "max_source_length": 64, "max_target_length": 16, **FAST}  # fmt: skip
    job = run(
        tmp_path, monkeypatch, hps, {"train": tmp_path / "data" / "train", "validation": tmp_path / "data" / "train"}
    )
    assert job.returncode == 0, job.failure
    assert {"eval_rouge1", "eval_gen_len"} <= set(job.results())


def test_a_restarted_attempt_loads_the_tokenized_cache(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    from sm_train.tasks.text_classification import TextClassification

    hps = {"model_name_or_path": str(tiny_encoder), "max_steps": 4, "save_steps": 2, "max_seq_length": 32}
    data = channels(tmp_path, ROWS, ROWS[:8])
    first = run(tmp_path / "a", monkeypatch, hps, data)
    assert first.returncode == 0, first.failure
    cache_dirs = list((first.root / "checkpoints" / "tokenized").iterdir())
    assert len(cache_dirs) == 1 and "tokenized data cached in" in capsys.readouterr().err

    def no_tokenizing(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the second attempt must not tokenize")

    # The next attempt: same checkpoint dir (restored from S3), new model dir, max_steps raised.
    shutil.rmtree(first.model_dir)
    first.model_dir.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(TextClassification, "preprocess", no_tokenizing)
        second = run(tmp_path / "a", monkeypatch, {**hps, "max_steps": 6}, data)
    assert second.returncode == 0, second.failure
    log = capsys.readouterr().err
    assert "loaded the tokenized data (eval, train) from the cache" in log
    assert "resuming at step 4 (epoch 1): skipping the first 1 batches" in log

    # A changed preprocessing hyperparameter, a fresh run: tokenized again, the other run's cache kept.
    shutil.rmtree(first.model_dir)
    first.model_dir.mkdir()
    third = run(tmp_path / "a", monkeypatch, {**hps, "max_steps": 8, "max_seq_length": 16, "resume": "never"}, data)
    assert third.returncode == 0, third.failure
    assert "loaded the tokenized" not in capsys.readouterr().err
    kept = {p.name for p in (first.root / "checkpoints" / "tokenized").iterdir()}
    assert len(kept) == 2 and cache_dirs[0].name in kept


def test_unsynced_checkpoints_warning_and_world_size_change(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    hps = {"model_name_or_path": str(tiny_encoder), "max_steps": 2, "save_steps": 2}
    job = run(tmp_path, monkeypatch, hps, channels(tmp_path, ROWS))
    assert job.returncode == 0
    assert "SageMaker is not syncing them (no checkpoint_s3_uri" in capsys.readouterr().err
    # Synced this time, and the checkpoint claims two processes wrote it.
    (job.root / "input" / "config" / "checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(job.root / "checkpoints"), "S3Uri": "s3://bucket/prefix/"})
    )
    manifest = job.root / "checkpoints" / "checkpoint-2" / "sm_train_checkpoint.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "world_size": 2}))
    shutil.rmtree(job.model_dir)
    job.model_dir.mkdir()
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    (job.root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in {**hps, "max_steps": 3}.items()})
    )
    assert cli.main(["train"]) == 0
    log = capsys.readouterr().err
    assert "not syncing" not in log
    assert "the checkpoint was written by 2 processes and this job runs 1" in log


def test_unset_tokenizer_limit_is_capped_by_the_model(tmp_path, monkeypatch) -> None:
    """QA's default max_seq_length (384) on a 128-position model whose tokenizer says 'no limit'."""
    from transformers import AutoTokenizer

    encoder = tiny.build_encoder(tmp_path / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    tokenizer.model_max_length = int(1e30)
    tokenizer.save_pretrained(encoder)
    write_rows(tmp_path / "data" / "train" / "t.jsonl", tiny.qa_rows(8, words=300))  # ~300 tokens per context
    hps = {"task": "question-answering", "model_name_or_path": str(encoder), "doc_stride": 32, **FAST}
    job = run(tmp_path, monkeypatch, hps, {"train": tmp_path / "data" / "train"})
    assert job.returncode == 0, job.failure
    saved = json.loads((job.model_dir / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 128


def test_early_stopping_patience_survives_a_restart(tmp_path, monkeypatch, tiny_encoder) -> None:
    """learning_rate=0: the evaluation never improves after step 2, so with patience 3 (an evaluation at every save)
    training stops at step 8. An attempt cut at step 6 resumes with the patience it had used up, not afresh (which
    would run on to step 12)."""
    hps = {"model_name_or_path": str(tiny_encoder), "learning_rate": 0, "save_steps": 2, "train_batch_size": 8,
           "early_stopping_patience": 3, "max_steps": 40}  # fmt: skip
    data = channels(tmp_path, ROWS, ROWS[:8])

    def last_step(job: Job) -> int:
        return max(int(p.name.split("-")[1]) for p in (job.root / "checkpoints").glob("checkpoint-*"))

    whole = run(tmp_path / "whole", monkeypatch, hps, data)
    assert whole.returncode == 0, whole.failure
    assert last_step(whole) == 8
    cut = run(tmp_path / "cut", monkeypatch, {**hps, "max_steps": 6}, data)
    assert cut.returncode == 0 and last_step(cut) == 6
    shutil.rmtree(cut.model_dir)
    cut.model_dir.mkdir()
    resumed = run(tmp_path / "cut", monkeypatch, hps, data)
    assert resumed.returncode == 0, resumed.failure
    assert last_step(resumed) == 8
    # The best checkpoint (step 2), whose model is the one saved, survived rotation.
    assert (resumed.root / "checkpoints" / "checkpoint-2").is_dir()


def test_the_saved_configuration_says_the_job_trained_and_evaluated(tmp_path, monkeypatch, tiny_encoder) -> None:
    """do_train/do_eval left unset and the final evaluation outside eval_strategy: the record says what ran."""
    hps = {"model_name_or_path": str(tiny_encoder), "eval_strategy": "steps", "eval_steps": 2, **FAST}
    job = run(tmp_path, monkeypatch, hps, channels(tmp_path, ROWS, ROWS[:8]))
    assert job.returncode == 0, job.failure
    written = json.loads((job.output_data_dir / "sm_train_config.json").read_text())
    assert written["ran"] == {"trained": True, "evaluated": "every 2 steps and at the end",
                              "rows": {"train": 24, "eval": 8}}  # fmt: skip
    training = written["training_args"]
    assert training["do_train"] is True and training["do_eval"] is True and training["eval_strategy"] == "steps"
    assert training["hub_token"] is None and "***" not in json.dumps(written)  # nothing secret was given


# Predictions on a test set, and text classification beyond one label per row.


def split_channels(tmp_path: Path, **splits: list[dict]) -> dict[str, Path]:
    return {name: write_rows(tmp_path / "data" / name / f"{name}.jsonl", rows).parent for name, rows in splits.items()}


def predictions(job: Job) -> list[dict]:
    return [json.loads(line) for line in (job.output_data_dir / "test_predictions.jsonl").read_text().splitlines()]


def printed_test_metrics(out: str, task: str = "text-classification") -> set[str]:
    """The test_* metric lines printed, each read back by exactly one of the task's metric definitions."""
    from sm_train.metrics import metric_definitions
    from sm_train.tasks import TASKS

    definitions = metric_definitions(TASKS[task].metric_names)
    lines = re.findall(r"^\[metric\] (test_\w+) = (\S+)$", out, flags=re.MULTILINE)
    for name, value in lines:
        line = f"[metric] {name} = {value}"
        assert [(d["Name"], m[1]) for d in definitions if (m := re.search(d["Regex"], line))] == [(name, value)]
    return {name for name, _ in lines}


def test_a_test_channel_is_predicted_row_by_row(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """With validation data the test channel is a test set: a prediction for every row (its id, else its number),
    test_* metric lines that the metric definitions capture, test_results.json; its data is not the run's."""
    from tests.jobs import assert_metric_lines_captured

    test = [{**row, "id": f"r{i}"} for i, row in enumerate(ROWS[:10])]
    data = split_channels(tmp_path, train=ROWS, validation=ROWS[:8], test=test)
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), **FAST}, data)
    assert job.returncode == 0, job.failure
    out = capsys.readouterr().out
    assert_metric_lines_captured(out, "text-classification")
    assert {"test_loss", "test_accuracy", "test_f1", "test_runtime"} <= printed_test_metrics(out)
    rows = predictions(job)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(10)]
    assert all(r["label"] in ("neg", "pos") and 0.5 <= r["score"] <= 1 for r in rows)
    results = job.results()
    assert results["test_samples"] == 10 and results["eval_samples"] == 8 and "test_accuracy" in results
    assert job.results("test_results.json")["test_accuracy"] == results["test_accuracy"]
    assert (job.output_data_dir / "test_results.json").is_file()


def test_predict_only_from_a_model_channel_with_unlabelled_rows(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """do_train=false, a model channel holding an earlier job's model: its labels are predicted (the test rows have
    none), without test metrics; a test channel without validation data is a test set when do_predict=true."""
    trained = run(tmp_path / "a", monkeypatch, {"model_name_or_path": str(tiny_encoder), **FAST},
                  split_channels(tmp_path / "a", train=ROWS))  # fmt: skip
    assert trained.returncode == 0, trained.failure
    unlabelled = [{"text": row["text"]} for row in ROWS[:5]]
    hps = {"do_train": False, "do_predict": True, "per_device_eval_batch_size": 4}
    data = {**split_channels(tmp_path / "b", test=unlabelled), "model": trained.model_dir}
    job = run(tmp_path / "b", monkeypatch, hps, data)
    assert job.returncode == 0, job.failure
    assert [r["id"] for r in predictions(job)] == [0, 1, 2, 3, 4]
    assert {r["label"] for r in predictions(job)} <= {"neg", "pos"}
    timings = {"test_runtime", "test_samples_per_second", "test_steps_per_second", "test_model_preparation_time"}
    assert printed_test_metrics(capsys.readouterr().out) <= timings  # no labels: no test_loss, no test_accuracy
    assert json.loads((job.model_dir / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    assert not (job.model_dir / "train_results.json").exists() and job.results()["test_samples"] == 5


def scores(n: int, seed: int = 0, whole: bool = False) -> list[dict]:
    """Sentences scored by their sentiment words: 4.5 (or 4) positive, 0.5 (or 1) negative."""
    return [
        {"text": text, "label": (4.0 if whole else 4.5) if label == "pos" else (1.0 if whole else 0.5)}
        for text, label in tiny.sentences(n, seed)
    ]


def tags(n: int, seed: int = 0) -> list[dict]:
    """Sentences tagged with every kind of word they hold: a list of labels per row (none for some)."""
    rows = []
    for text, _ in tiny.sentences(n, seed):
        words = set(text.split())
        found = [tag for tag, kind in (("positive", tiny.POSITIVE), ("negative", tiny.NEGATIVE)) if words & set(kind)]
        rows.append({"text": text, "label": found + (["film"] if "film" in words else [])})
    return rows


RESUMABLE = {"max_steps": 6, "save_steps": 2, "train_batch_size": 8, "lr_scheduler_type": "constant", "seed": 3}


def weights(job: Job) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(job.model_dir / "model.safetensors")


@pytest.mark.parametrize(
    ("problem", "rows", "metric"),
    [("regression", scores, "eval_pearson"), ("multi_label_classification", tags, "eval_f1_micro")],
)
def test_regression_and_multi_label_jobs_train_evaluate_and_resume_exactly(
    tmp_path, monkeypatch, tiny_encoder, problem, rows, metric
) -> None:
    """problem_type read off the labels; the model's loss follows (MSE, BCE), evaluation reports the problem's metrics;
    a run cut at step 4 and resumed ends with the weights of the uninterrupted one."""
    data = split_channels(tmp_path, train=rows(24), validation=rows(8, seed=1), test=rows(6, seed=2))
    hps = {"model_name_or_path": str(tiny_encoder), **RESUMABLE}
    whole = run(tmp_path / "whole", monkeypatch, hps, data)
    assert whole.returncode == 0, whole.failure
    config = json.loads((whole.model_dir / "config.json").read_text())
    assert (
        config["problem_type"] == problem
        and metric in whole.results()
        and metric.replace("eval", "test") in whole.results()
    )
    if problem == "regression":
        assert config["id2label"] == {"0": "LABEL_0"} and all(set(r) == {"id", "score"} for r in predictions(whole))
    else:
        assert config["id2label"] == {"0": "film", "1": "negative", "2": "positive"}
        assert all(set(label) == {"label", "score"} for r in predictions(whole) for label in r["labels"])
    cut = run(tmp_path / "cut", monkeypatch, {**hps, "max_steps": 4}, data)
    assert cut.returncode == 0, cut.failure
    shutil.rmtree(cut.model_dir)
    cut.model_dir.mkdir()
    resumed = run(tmp_path / "cut", monkeypatch, hps, data)
    assert resumed.returncode == 0, resumed.failure
    first, second = weights(whole), weights(resumed)
    assert first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)


def test_a_changed_problem_type_is_not_resumed(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """The problem type is part of the run: the same two labels as one-element lists (multi-label) are refused by
    the same-run rule; whole-number scores read as classes (auto) instead of numbers (regression) make a head of
    another shape, whose checkpoint is set aside as another model's. The same settings resume."""
    single = [{"text": text, "label": label} for text, label in tiny.sentences(24)]
    hps = {"model_name_or_path": str(tiny_encoder), "max_steps": 2, "save_steps": 2}

    def again(base: Path, changes: dict, rows: list[dict]) -> Job:
        job = Job(base / "opt" / "ml")
        if job.model_dir.exists():  # the next attempt: the same checkpoint dir, a new model dir
            shutil.rmtree(job.model_dir)
            job.model_dir.mkdir()
            (job.root / "output" / "failure").unlink(missing_ok=True)
        return run(base, monkeypatch, {**hps, **changes}, split_channels(base, train=rows))

    assert again(tmp_path / "a", {}, single).returncode == 0
    lists = [{**row, "label": [row["label"]]} for row in single]
    changed = again(tmp_path / "a", {"max_steps": 3}, lists)
    pattern = r"Not resuming from .*checkpoint-2: .*problem_type \(resolved\): single_label_classification -> multi_"
    assert changed.returncode != 0 and re.search(pattern, changed.failure or "")
    assert not list(changed.model_dir.iterdir())
    assert again(tmp_path / "a", {"max_steps": 3}, single).returncode == 0
    assert "resuming at step 2" in capsys.readouterr().err

    numbers = scores(24, whole=True)
    regression = again(tmp_path / "b", {"problem_type": "regression"}, numbers)
    assert regression.returncode == 0, regression.failure
    shape = again(tmp_path / "b", {"max_steps": 3}, numbers)
    assert shape.returncode == 0, shape.failure
    log = capsys.readouterr().err
    assert "checkpoint-2 (its weights belong to another model (classifier.bias: (1,) here, (2,) in it))" in log
    assert json.loads((shape.model_dir / "config.json").read_text())["problem_type"] == "single_label_classification"


@pytest.mark.parametrize("task", ["question-answering", "summarization"])
def test_every_task_predicts_a_test_channel(tmp_path, monkeypatch, task, capsys) -> None:
    """Answers and summaries for every test row (a blank QA context gets no answer), test_* lines captured."""
    with capsys.disabled():  # library log handlers made now must not hold this test's captured stream
        if task == "question-answering":
            model, rows = tiny.build_encoder(tmp_path / "model"), tiny.qa_rows
            hps = {"max_seq_length": 64, "doc_stride": 24}
        else:
            model, rows = tiny.build_seq2seq(tmp_path / "model"), tiny.dialogues
            hps = {"max_source_length": 64, "max_target_length": 16}
    test = rows(6, seed=2)
    if task == "question-answering":
        test[3] = {**test[3], "context": " ", "answers": {"text": [], "answer_start": []}}
    data = split_channels(tmp_path, train=rows(16), validation=rows(4, seed=1), test=test)
    job = run(tmp_path, monkeypatch, {"task": task, "model_name_or_path": str(model), **hps, **FAST}, data)
    assert job.returncode == 0, job.failure
    printed = printed_test_metrics(capsys.readouterr().out, task)
    assert {"test_f1", "test_exact_match"} <= printed if task == "question-answering" else "test_rouge1" in printed
    rows_written = predictions(job)
    assert len(rows_written) == 6
    if task == "question-answering":
        assert [r["id"] for r in rows_written] == [r["id"] for r in test] and rows_written[3]["answer"] == ""
    else:
        assert [r["id"] for r in rows_written] == list(range(6)) and all(
            isinstance(r["summary"], str) for r in rows_written
        )
