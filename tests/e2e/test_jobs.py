"""Whole jobs run in-process (fast): task behaviour and train/eval switches (failures: tests/e2e/test_failures.py)."""

from __future__ import annotations

import json
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
