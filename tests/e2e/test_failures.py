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
    # json.loads and float() read these as infinity and NaN: a job trained to NaN weights and exited 0.
    "infinite learning rate": (lambda t: bad(t, learning_rate="1e400"), r"'learning_rate' must be a finite number"),
    "NaN epochs": (lambda t: bad(t, epochs="nan"), r"'num_train_epochs' must be a finite number, got nan"),
    "NaN grace": (lambda t: bad(t, sigterm_grace_seconds="nan"), r"'sigterm_grace_seconds' must be a finite"),
    "negative seed": (lambda t: bad(t, seed=-1), r"'seed' must be at least 0 and below 4294967296"),
    "negative workers": (lambda t: bad(t, dataloader_num_workers=-1), r"'dataloader_num_workers' must be at least 0"),
    "alias and field": (
        lambda t: bad(t, num_train_epochs=1),  # epochs=1 is set too
        r"'epochs' and 'num_train_epochs' both set 'num_train_epochs': keep one",
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
        ({}, [{**r, "label": "x" if i == 1 else str(i / 2)} for i, r in enumerate(ROWS)], None, r"mixes numbers that"),
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


# --- the job's own files: SageMaker's config files, and the folders it writes -----------------------------------


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("hyperparameters.json", '{"epochs": "1",', r"hyperparameters\.json cannot be read as JSON"),
        ("hyperparameters.json", '["epochs", "1"]', r"hyperparameters\.json must hold a JSON object, got a list"),
        ("resourceconfig.json", "{", r"resourceconfig\.json cannot be read as JSON"),
        ("resourceconfig.json", '{"hosts": "algo-1", "current_host": "algo-1"}', r"'hosts' in .* non-empty list"),
        ("inputdataconfig.json", "[]", r"inputdataconfig\.json must hold a JSON object, got a list"),
    ],
)
def test_a_malformed_config_file_gets_a_failure_file(
    tmp_path, monkeypatch, capsys, tiny_encoder, name: str, content: str, pattern: str
) -> None:
    hps, data = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    job = make_tree(tmp_path / "job", hps, data)
    (job.root / "input" / "config" / name).write_text(content)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    job.stdout, job.stderr = capsys.readouterr()
    assert_fails(job, pattern)


@pytest.mark.parametrize(("variable", "what"), [("SM_MODEL_DIR", "model dir"), ("SM_OUTPUT_DATA_DIR", "output dir")])
def test_a_folder_that_cannot_be_written_fails_before_the_data_is_read(
    tmp_path, monkeypatch, capsys, tiny_encoder, variable: str, what: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv(variable, str(tmp_path / "a-file" / "inside"))
    monkeypatch.setattr(runner.data, "select_splits", lambda *a: pytest.fail("the data was read first"))
    hps, data = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    job = run_logged(tmp_path, monkeypatch, capsys, hps, data)
    assert job.returncode == 1
    assert job.failure.startswith(f"Cannot write to the {what} {tmp_path / 'a-file' / 'inside'} (")
    assert f"point {variable} at a writable folder" in job.failure


def test_a_checkpoint_dir_that_cannot_be_created_is_named(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    # Nothing can be created in /proc, even by root (a permission test would pass as root).
    hps, data = bad(tmp_path, model_name_or_path=str(tiny_encoder), checkpoint_dir="/proc/sm_train-test/c")
    job = run_logged(tmp_path, monkeypatch, capsys, hps, data)
    assert_fails(
        job, r"Cannot write to the checkpoint dir /proc/sm_train-test/c \(FileNotFoundError: .*checkpoint_dir"
    )


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
    def explode(cfg: Any, env: Any, hardware: Any) -> None:
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

    def panic(cfg: Any, env: Any, hardware: Any) -> None:
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


# --- data the model would misread or crash on: refused before the model loads, never an "unexpected error" --------


def refused_before_the_model(job_run: Any, monkeypatch: pytest.MonkeyPatch, pattern: str) -> Job:
    """The job run (job_run()) with the model's loading forbidden: it fails with the pattern, writes nothing to the
    model dir, and its reason is sm_train's own, not an unexpected error."""
    load = runner.load

    def no_model(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
        assert what != "model", "the model must not be loaded for bad data"
        return load(loader, name, what, **kwargs)

    monkeypatch.setattr(runner, "load", no_model)
    job = job_run()
    assert_fails(job, pattern)
    assert "unexpected error" not in job.failure
    return job


def test_a_repeated_csv_header_name_fails(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """pandas read `review,review,sentiment` as review and review.1, and the job trained on the first (junk) one."""
    hps, data = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    rows = "".join(f"junk {i},{r['review']},{r['sentiment']}\n" for i, r in enumerate(sentiment(16)))
    corrupt(tmp_path / "train" / "train.csv", f"review,review,sentiment\n{rows}")
    job = refused_before_the_model(
        lambda: run_logged(tmp_path, monkeypatch, capsys, hps, data),
        monkeypatch,
        r"train\.csv: the header row names the columns \['review'\] more than once; give every column a unique name",
    )
    assert "junk" not in job.failure


def test_labels_that_differ_only_by_whitespace_fail(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """'pos' and 'pos ' trained as 4 classes of 2 (train_loss ln 4) and the job exited 0."""
    hps, data = bad(tmp_path, model_name_or_path=str(tiny_encoder))
    rows = [{**r, "sentiment": r["sentiment"] + " " * (i % 4 == 0)} for i, r in enumerate(sentiment(16))]
    write_rows(tmp_path / "train" / "train.csv", rows)
    refused_before_the_model(
        lambda: run_logged(tmp_path, monkeypatch, capsys, hps, data),
        monkeypatch,
        r"Column 'sentiment' of the train data has labels that differ only by case or surrounding whitespace: "
        r"'pos' vs 'pos '; .* Clean the labels",
    )


def pretokenized(tmp_path: Path, tiny_encoder: Path, change: Any) -> dict[str, Path]:
    """A train channel of rows tokenized by the model's tokenizer, each row's input_ids changed by change(i, ids)."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    rows = [
        {"input_ids": change(i, tokenizer(r["text"])["input_ids"]), "label": r["label"]} for i, r in enumerate(ROWS)
    ]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    return {"train": tmp_path / "saved"}


def test_pretokenized_ids_beyond_the_vocabulary_fail(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """Ids of another tokenizer crashed the first step (IndexError: index out of range in self)."""
    data = pretokenized(tmp_path, tiny_encoder, lambda i, ids: [*ids[:-1], 50_000, ids[-1]] if i in (3, 5) else ids)
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1}
    refused_before_the_model(
        lambda: run_logged(tmp_path, monkeypatch, capsys, hps, data),
        monkeypatch,
        r"Column 'input_ids' of the train data has token ids outside the model's vocabulary \(0 to \d+\) in 2 of 24 "
        r"rows \(ids: 2 at or above \d+\); the first is row 3 .* with truncation=True, max_length=128",
    )


def test_pretokenized_rows_longer_than_the_model_takes_fail(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """Rows longer than the model's positions crashed the first step (IndexError: index out of range in self)."""
    data = pretokenized(tmp_path, tiny_encoder, lambda i, ids: ids * 40 if i == 7 else ids)
    hps = {"model_name_or_path": str(tiny_encoder), "epochs": 1}
    refused_before_the_model(
        lambda: run_logged(tmp_path, monkeypatch, capsys, hps, data),
        monkeypatch,
        r"1 of 24 rows of the train data are longer than max_seq_length=128 tokens in 'input_ids' \(up to \d+\); the "
        r"first is row 7 .* truncation=True, max_length=128",
    )


# --- the model's files: its tokenizer, an archive of it, its weights ------------------------------------------------

ONE_STEP = {"max_steps": 1, "train_batch_size": 8}


def no_model_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job fails if it gets as far as loading the model."""
    load = runner.load

    def guarded(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
        assert what != "model", "the model must not be loaded"
        return load(loader, name, what, **kwargs)

    monkeypatch.setattr(runner, "load", guarded)


def test_a_model_saved_without_its_tokenizer_fails_before_training(
    tmp_path, monkeypatch, capsys, tiny_encoder
) -> None:
    """config.json and weights alone: transformers would build a 5-token tokenizer, train on unknown tokens only and
    save that tokenizer for deployment."""
    import json

    bare = tiny.without_tokenizer(tiny_encoder, tmp_path / "bare")
    with monkeypatch.context() as patch:
        no_model_loaded(patch)
        hps = {"model_name_or_path": str(bare), **ONE_STEP}
        job = run_logged(tmp_path / "a", monkeypatch, capsys, hps, channels(tmp_path / "a", ROWS))
    found = r"\(found: config.json, model.safetensors\)"
    assert_fails(job, rf"model_name_or_path='{bare}' has no tokenizer files {found}.*set tokenizer_name")
    # The same folder with its tokenizer given apart trains, and saves that tokenizer with the model.
    hps = {"model_name_or_path": str(bare), "tokenizer_name": str(tiny_encoder), **ONE_STEP}
    job = run(tmp_path / "b", monkeypatch, hps, channels(tmp_path / "b", ROWS))
    assert job.returncode == 0, job.failure
    vocabulary = [
        json.loads((d / "tokenizer.json").read_text())["model"]["vocab"] for d in (job.model_dir, tiny_encoder)
    ]
    assert vocabulary[0] == vocabulary[1]


def test_a_tokenizer_larger_than_the_models_embeddings_fails_before_training(
    tmp_path, monkeypatch, capsys, tiny_encoder
) -> None:
    """Token ids past the embedding rows crashed the first step with an IndexError, an "unexpected error"."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    rows = len(tokenizer)
    tokenizer.add_tokens(["brandnewword"])
    tokenizer.save_pretrained(tmp_path / "bigger")
    no_model_loaded(monkeypatch)
    hps = {"model_name_or_path": str(tiny_encoder), "tokenizer_name": str(tmp_path / "bigger"), **ONE_STEP}
    job = run_logged(tmp_path, monkeypatch, capsys, hps, channels(tmp_path, ROWS))
    bigger = tmp_path / "bigger"
    assert_fails(job, rf"tokenizer_name='{bigger}' holds {rows + 1} tokens, more than the {rows} token embeddings")


def test_a_model_channel_holding_model_tar_gz_trains(tmp_path, monkeypatch, capsys, tiny_encoder, scratch) -> None:
    """What a previous SageMaker job's model artifact (its S3 model URI) delivers: one model.tar.gz."""
    channel = tiny.model_archive(tiny_encoder, tmp_path / "model-channel" / "model.tar.gz").parent
    job = run(tmp_path, monkeypatch, ONE_STEP, {**channels(tmp_path, ROWS), "model": channel})
    assert job.returncode == 0, job.failure
    assert f"into {scratch}" in capsys.readouterr().err
    assert (job.model_dir / "model.safetensors").is_file() and (job.model_dir / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("name", "link", "problem"),
    [
        ("../evil", None, r"'../evil' climbs out of the archive's folder"),
        ("/tmp/sm-train-test-evil", None, r"'/tmp/sm-train-test-evil' has an absolute path"),
        ("evil", "../../../evil-target", r"'evil' is a link pointing outside the archive's folder"),
    ],
    ids=["parent path", "absolute path", "symlink out"],
)
def test_an_unsafe_model_archive_is_refused(
    tmp_path, monkeypatch, capsys, tiny_encoder, scratch, name: str, link: str | None, problem: str
) -> None:
    import io
    import tarfile

    archive = tiny.model_archive(tiny_encoder, tmp_path / "model-channel" / "model.tar")
    with tarfile.open(archive, "a") as tar:
        member = tarfile.TarInfo(name)
        if link:
            member.type, member.linkname = tarfile.SYMTYPE, link
            tar.addfile(member)
        else:
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))
    hps = {"model_name_or_path": str(archive.parent), **ONE_STEP}
    job = run_logged(tmp_path, monkeypatch, capsys, hps, channels(tmp_path, ROWS))
    assert_fails(job, rf"model.tar is not safe to unpack: member {problem}")
    assert not [p for p in tmp_path.rglob("*evil*")] and not Path("/tmp/sm-train-test-evil").exists()
    assert not [p for p in scratch.iterdir() if p.is_dir()], "nothing of the archive may be kept"


def test_pickled_weights_are_refused_with_the_safetensors_advice(tmp_path, monkeypatch, capsys, tiny_encoder) -> None:
    """torch's own refusal names no file and advises weights_only=False, which would run the file's code."""
    model = tiny.pickled_weights(tiny_encoder, tmp_path / "pickled")
    job = run_logged(
        tmp_path, monkeypatch, capsys, {"model_name_or_path": str(model), **ONE_STEP}, channels(tmp_path, ROWS)
    )
    assert_fails(job, rf"{model / 'pytorch_model.bin'} holds Python objects .*Convert the weights to safetensors")
    assert "weights_only=False" not in job.failure
