"""Whole jobs that fail, run in-process (fast): each failure reason, the failure file, and what a failed job leaves.

The same failure file and non-zero exit through the real SageMaker toolkit: one case per task in
tests/e2e/test_toolkit_*.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sm_train import cli, runner
from tests import tiny
from tests.e2e.test_jobs import ROWS, channels, run
from tests.jobs import Job, assert_fails, make_tree, write_rows


def run_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, hps: dict[str, Any], data: dict) -> Job:
    """The job run in-process, with what it printed as its log (the traceback included)."""
    job = run(tmp_path, monkeypatch, hps, data)
    job.stdout, job.stderr = capsys.readouterr()
    return job


# --- text classification: hyperparameters, data and labels -----------------------------------------------------


def sentiment(n: int, seed: int = 0) -> list[dict]:
    return [{"review": text, "sentiment": label} for text, label in tiny.sentences(n, seed)]


def bad(tmp_path: Path, **change) -> tuple[dict, dict]:
    """A valid job's hyperparameters and channels, with one thing changed."""
    write_rows(tmp_path / "train" / "train.csv", sentiment(16))
    write_rows(tmp_path / "validation" / "val.csv", sentiment(8, seed=2))
    hps = {"text_column": "review", "label_column": "sentiment", "epochs": 1}
    return {**hps, **change}, {"train": tmp_path / "train", "validation": tmp_path / "validation"}


def corrupt(path: Path, text: str) -> None:
    path.write_text(text)


FAILURES = {
    "misspelled key": (lambda t: bad(t, learning_rat=1e-4), r"Unknown hyperparameter 'learning_rat'.*learning_rate"),
    "wrong type": (
        lambda t: bad(t, learning_rate="fast"),
        r"Hyperparameter 'learning_rate' must be a number, got 'fast'",
    ),
    "unknown task": (lambda t: bad(t, task="translation"), r"Unknown task 'translation'. Supported tasks:"),
    "batch size 0": (
        lambda t: bad(t, per_device_train_batch_size=0),
        r"'per_device_train_batch_size' must be at least 1",
    ),
    "missing column": (
        lambda t: bad(t, text_column="body"),
        r"text_column='body': no such column .*\['review', 'sentiment'\]",
    ),
    "missing model": (
        lambda t: bad(t, model_name_or_path="/opt/ml/input/data/nomodel"),
        r"model_name_or_path='/opt/ml/input/data/nomodel' does not exist",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_bad_hyperparameters_fail_with_a_specific_reason(
    case: str, tmp_path, monkeypatch, capsys, tiny_encoder
) -> None:
    make, pattern = FAILURES[case]
    hps, channels = make(tmp_path)
    hps.setdefault("model_name_or_path", str(tiny_encoder))
    assert_fails(run_logged(tmp_path, monkeypatch, capsys, hps, channels), pattern)


def test_missing_train_channel(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    hps, channels = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    job = run_logged(tmp_path, monkeypatch, capsys, hps, {"validation": channels["validation"]})
    assert_fails(job, r"No training data: give the job a 'train' channel.*Channels present: validation")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("review,sentiment\n", r"The train data from the train channel has no rows"),
        ("review,sentiment\na,pos\nb,neg,extra\n", r"train.csv does not parse as CSV: .*line 3"),
    ],
)
def test_bad_data_files(tmp_path, monkeypatch, capsys, tiny_encoder, content: str, pattern: str) -> None:
    hps, channels = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    corrupt(tmp_path / "train" / "train.csv", content)
    assert_fails(run_logged(tmp_path, monkeypatch, capsys, hps, channels), pattern)


def test_unseen_evaluation_label(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    hps, channels = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    write_rows(tmp_path / "validation" / "val.csv", [{"review": "so so", "sentiment": "meh"}, *sentiment(4)])
    job = run_logged(tmp_path, monkeypatch, capsys, hps, channels)
    assert_fails(job, r"Evaluation labels \['meh'\] do not occur in the training data")


@pytest.mark.parametrize(
    ("hps", "train", "evaluation", "pattern"),
    [
        ({"do_eval": True}, ROWS, None, r"do_eval=true but there is no evaluation data"),
        ({}, [{**r, "label": None} for r in ROWS[:3]] + ROWS, None, r"Column 'label' of the train data has 3 empty"),
        ({}, [{**r, "label": "pos"} for r in ROWS], None, r"single label \['pos'\]; need at least two"),
        ({}, [{**r, "label": i / 2} for i, r in enumerate(ROWS)], None, r"non-integer numbers"),
        ({"label_column": "stars"}, ROWS, None, r"label_column='stars': no such column in the train data"),
        ({}, [{"body": r["text"], "label": r["label"]} for r in ROWS], None, r"no 'text' or 'sentence' column"),
        ({"text_column": "body"}, ROWS, [{"body": "x", "label": "pos"}], r"data has no 'text'|no such column .*train"),
        ({}, ROWS, [{"sentence": "x", "label": "pos"}], r"The eval data has no 'text' column, which the train data"),
        (
            {"text_pair_column": "pair"},
            [{**r, "pair": None if i < 2 else "x"} for i, r in enumerate(ROWS)],
            None,
            r"Column 'pair' of the train data has 2 empty values",
        ),  # fmt: skip
        ({"eval_strategy": "epoch"}, ROWS, None, r"eval_strategy=epoch needs evaluation data"),
        ({"early_stopping_patience": 2}, ROWS, None, r"early_stopping_patience=2 needs evaluation data"),
    ],
)
def test_data_problems_fail_before_the_model_loads(
    tmp_path, monkeypatch, tiny_encoder, hps, train, evaluation, pattern
) -> None:
    load = runner.load

    def no_model(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
        assert what != "model", "the model must not be loaded for bad data"
        return load(loader, name, what, **kwargs)

    monkeypatch.setattr(runner, "load", no_model)
    job = run(
        tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder), **hps}, channels(tmp_path, train, evaluation)
    )
    assert job.returncode == 1
    assert job.failure is not None and __import__("re").search(pattern, job.failure), job.failure


def test_model_dir_without_config(tmp_path, monkeypatch) -> None:
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "weights.bin").write_text("x")
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tmp_path / "notamodel")}, channels(tmp_path, ROWS))
    assert job.returncode == 1 and "has no config.json (found: weights.bin)" in job.failure


# --- question answering and summarization -----------------------------------------------------------------------

# tests/e2e/test_toolkit_qa.py's LEARN: windows of 64 tokens, 24 apart.
QA_LEARN = {"task": "question-answering", "max_seq_length": 64, "doc_stride": 24, "learning_rate": 1e-3, "epochs": 4,
            "train_batch_size": 16, "seed": 3}  # fmt: skip


def test_doc_stride_without_room_fails_before_training(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    write_rows(tmp_path / "train" / "t.jsonl", tiny.qa_rows(8))
    hps = {"model_name_or_path": str(tiny_encoder), **QA_LEARN, "doc_stride": 60}
    job = run_logged(tmp_path, monkeypatch, capsys, hps, {"train": tmp_path / "train"})
    assert_fails(job, r"doc_stride=60 leaves no room for the question")


def test_unknown_columns_fail_with_the_list(tmp_path, monkeypatch, capsys) -> None:
    write_rows(
        tmp_path / "train" / "t.csv", [{"chat": r["dialogue"], "tldr": r["summary"]} for r in tiny.dialogues(4)]
    )
    hps = {"task": "summarization", "model_name_or_path": str(tiny.build_seq2seq(tmp_path / "bart"))}
    job = run_logged(tmp_path, monkeypatch, capsys, hps, {"train": tmp_path / "train"})
    assert_fails(job, r"Cannot tell the text and summary columns of the train data \(columns: \['chat', 'tldr'\]\)")


# --- errors sm_train did not foresee, and the failure file ------------------------------------------------------


def test_unexpected_errors_write_a_redacted_failure_and_clean_up(tmp_path, monkeypatch, tiny_encoder) -> None:
    def explode(cfg: Any, env: Any) -> None:
        (env.model_dir / "model.safetensors").write_text("half written")
        (env.model_dir / "sub").mkdir()
        raise RuntimeError("boom while using token hf_Secret123 " + "x" * 2000)

    monkeypatch.setattr(runner, "run", explode)
    hps = {"model_name_or_path": str(tiny_encoder), "hub_token": "hf_Secret123"}
    job = make_tree(tmp_path, hps, channels(tmp_path, ROWS))
    (job.model_dir / "kept.txt").write_text("was there before the job")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 1
    failure = job.failure
    assert failure.startswith("RuntimeError: boom while using token *** x")
    assert "hf_Secret123" not in failure and len(failure) <= 1024
    assert sorted(p.name for p in job.model_dir.iterdir()) == ["kept.txt"]


def test_base_exceptions_like_tokenizer_panics_are_caught(tmp_path, monkeypatch, tiny_encoder) -> None:
    class PanicException(BaseException):  # what the tokenizers Rust bindings raise
        pass

    def panic(cfg: Any, env: Any) -> None:
        raise PanicException("assertion failed: stride < max_len")

    monkeypatch.setattr(runner, "run", panic)
    job = run(tmp_path, monkeypatch, {"model_name_or_path": str(tiny_encoder)}, channels(tmp_path, ROWS))
    assert job.returncode == 1 and job.failure.startswith("PanicException: assertion failed")


def test_an_existing_failure_file_is_kept(tmp_path, monkeypatch) -> None:
    job = make_tree(tmp_path, {"learning_rat": 1}, {})
    (job.root / "output" / "failure").write_text("first error, from another rank")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 1
    assert job.failure == "first error, from another rank"


# --- after training -------------------------------------------------------------------------------------------------


def test_a_failed_push_to_the_hub_keeps_the_trained_model(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """The Hub unreachable at the end of a finished job: the job fails and says so, and the model dir and outputs
    stay (SageMaker uploads them), instead of being cleaned away as a half-written job's are."""
    from huggingface_hub import constants
    from transformers import Trainer

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    monkeypatch.setattr(Trainer, "init_hf_repo", lambda self, token=None: None)  # no repo created in a test
    monkeypatch.setattr(Trainer, "_push_from_checkpoint", lambda self, folder: None)

    connect_error = type("ConnectError", (Exception,), {"__module__": "httpx"})  # huggingface_hub 1.x's client

    def unreachable(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise connect_error("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(Trainer, "push_to_hub", unreachable)
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1, "push_to_hub": True, "hub_model_id": "me/model"}
    job = run_logged(tmp_path, monkeypatch, capsys, hps, channels(tmp_path, ROWS))
    assert job.returncode == 1
    assert job.failure.startswith(
        f"Training finished and the model is saved in {job.model_dir} (SageMaker uploads it with the job), but "
        "pushing it to the Hub (hub_model_id=me/model) failed: Could not reach the network (ConnectError"
    )
    assert (job.model_dir / "model.safetensors").is_file() and (job.output_data_dir / "sm_train_config.json").is_file()
    assert "hf_secret_token_value" not in job.failure + job.stdout + job.stderr
