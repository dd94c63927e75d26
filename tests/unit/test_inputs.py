"""Bad inputs that used to get through: shapes, types, blank values and failure reasons that quoted data."""

import gzip
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from sm_train import cli
from sm_train.data import load_path
from sm_train.dialects import render
from sm_train.errors import ConfigError, DataError
from sm_train.tasks.question_answering import QuestionAnswering, QuestionAnsweringArgs
from sm_train.tasks.summarization import Summarization, SummarizationArgs
from sm_train.tasks.text_classification import TextClassification, TextClassificationArgs
from tests import tiny
from tests.jobs import make_tree, write_rows

SECRET = "s3cr3t-row-content"  # data that must never reach a failure reason


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def qa_task(tokenizer) -> QuestionAnswering:
    return QuestionAnswering(QuestionAnsweringArgs(max_seq_length=64, doc_stride=24), tokenizer)


def splits(train: list[dict], evaluation: list[dict] | None = None) -> DatasetDict:
    raw = {"train": Dataset.from_list(train)}
    if evaluation is not None:
        raw["eval"] = Dataset.from_list(evaluation)
    return DatasetDict(raw)


# Item 10: shapes of hyperparameters.


@pytest.mark.parametrize("value", [{"labels": 1}, '{"labels": 1}', [["labels"]], '[["a"], "b"]'])
def test_list_hyperparameters_refuse_objects_and_nesting(value) -> None:
    with pytest.raises(ConfigError, match=r"Hyperparameter 'label_names' takes a .*list.*; pass a JSON list"):
        render("label_names", value, "list")


@pytest.mark.parametrize("value", [["a"], '["a"]'])
def test_dict_hyperparameters_refuse_lists(value) -> None:
    with pytest.raises(ConfigError, match=r"Hyperparameter 'fsdp_config' takes a JSON object .* got a list"):
        render("fsdp_config", value, "dict")


def test_a_dict_for_label_names_fails_the_job(tmp_path, monkeypatch) -> None:
    job = make_tree(tmp_path, {"model_name_or_path": "m", "label_names": {"labels": 1}})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 1
    assert job.failure is not None and job.failure.startswith("Hyperparameter 'label_names' takes a list")


# Item 10: text columns hold strings, in every task.


def test_a_parquet_list_column_is_not_text(tmp_path, tokenizer) -> None:
    rows = [{"text": ["a", "b"], "label": i % 2} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    raw = DatasetDict({"train": load_path(tmp_path / "t.parquet")})
    pattern = (
        r"Column 'text' of the train data is of type list<.*string>, not text: .* Join lists into one string "
        r".* or set text_column"
    )
    with pytest.raises(DataError, match=pattern):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


@pytest.mark.parametrize(
    ("task", "args", "train", "column"),
    [
        (TextClassification, {}, [{"text": 7, "label": "a"}, {"text": 8, "label": "b"}], "text"),
        (
            TextClassification,
            {"text_pair_column": "pair"},
            [{"text": "x", "pair": [1.5], "label": "a"}, {"text": "y", "pair": [2.5], "label": "b"}],
            "pair",
        ),
        (Summarization, {}, [{"dialogue": "x", "summary": ["a", "b"]}], "summary"),
        (
            QuestionAnswering,
            {"max_seq_length": 64, "doc_stride": 24},
            [{**r, "question": [r["question"]]} for r in tiny.qa_rows(2)],
            "question",
        ),
    ],
)
def test_text_columns_must_be_strings(tokenizer, task, args, train, column) -> None:
    raw = splits(train, train)
    with pytest.raises(DataError, match=rf"Column '{column}' of the train data is of type .+, not text"):
        task(task.Args(**args), tokenizer).prepare(raw)


def test_evaluation_text_columns_are_checked_too(tokenizer) -> None:
    evaluation = [{"text": ["x"], "label": "a"}]
    raw = splits([{"text": "x", "label": "a"}, {"text": "y", "label": "b"}], evaluation)
    with pytest.raises(DataError, match=r"Column 'text' of the eval data is of type list<"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


# Item 10: blank summaries and labels.


def test_all_blank_summaries_fail(tokenizer) -> None:
    raw = splits([{"dialogue": f"d{i}", "summary": s} for i, s in enumerate(["", "  ", "\n"])])
    with pytest.raises(DataError, match=r"Column 'summary' of the train data is empty or only whitespace in 3 of 3"):
        Summarization(SummarizationArgs(), tokenizer).prepare(raw)


def test_blank_summaries_are_dropped_with_a_count(tokenizer, caplog) -> None:
    train = [{"dialogue": f"d{i}", "summary": "" if i in (1, 3) else f"s{i}"} for i in range(6)]
    evaluation = [
        {"dialogue": "e0", "summary": " "},
        {"dialogue": "e1", "summary": "s"},
        {"dialogue": "e2", "summary": "t"},
    ]
    raw = splits(train, evaluation)
    caplog.set_level(logging.WARNING)
    prepared = Summarization(SummarizationArgs(), tokenizer).prepare(raw)
    assert len(raw["train"]) == 6 and len(raw["eval"]) == 3  # the given splits are not changed
    raw = prepared
    assert raw["train"]["dialogue"] == ["d0", "d2", "d4", "d5"] and raw["eval"]["dialogue"] == ["e1", "e2"]
    assert "dropping 2 of 6 train rows whose 'summary' is empty" in caplog.text
    assert "dropping 1 of 3 eval rows" in caplog.text


@pytest.mark.parametrize("empty", ["", "  ", float("nan")])
def test_blank_or_nan_labels_are_missing_not_a_class(tokenizer, empty) -> None:
    rows = [{"text": f"t{i}", "label": "a" if i % 2 else "b"} for i in range(4)]
    if isinstance(empty, float):
        rows = [{**r, "label": float(i % 2)} for i, r in enumerate(rows)]
    rows[2] = {**rows[2], "label": empty}
    with pytest.raises(DataError, match=r"Column 'label' of the train data has 1 empty labels \(blank text or NaN\)"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(splits(rows))


def test_labels_named_like_missing_values_stay_labels_blank_ones_do_not(tmp_path, tokenizer) -> None:
    """CSV: only an empty field is missing (a null); "NA", "null", "nan" and "None" are class names. JSON agrees,
    and a blank string there is missing too, as the empty CSV field is."""
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate(["NA", "null", "nan", "None", "x", "NA"])]
    for name in ("t.csv", "t.jsonl"):
        raw = DatasetDict({"train": load_path(write_rows(tmp_path / name, rows))})
        task = TextClassification(TextClassificationArgs(), tokenizer)
        task.prepare(raw)
        assert task.label_names == ["NA", "None", "nan", "null", "x"]
    raw = DatasetDict({"train": load_path(write_rows(tmp_path / "blank.jsonl", [*rows, {"text": "t", "label": " "}]))})
    with pytest.raises(DataError, match=r"Column 'label' of the train data has 1 empty labels"):
        TextClassification(TextClassificationArgs(), tokenizer).prepare(raw)


# Item 8: question answering with empty contexts.


def test_blank_qa_contexts_are_dropped_from_training_and_evaluation(tokenizer, caplog) -> None:
    rows = tiny.qa_rows(6)
    train = [{**r, "context": ""} if i == 2 else r for i, r in enumerate(rows)]
    evaluation = [{**r, "context": "   "} if i == 4 else r for i, r in enumerate(rows)]
    qa = qa_task(tokenizer)
    caplog.set_level(logging.WARNING)
    raw = qa.prepare(splits(train, evaluation))
    assert "dropping 1 of 6 train rows whose 'context' is empty" in caplog.text
    assert "dropping 1 of 6 eval rows whose 'context' is empty" in caplog.text
    assert rows[2]["id"] not in raw["train"]["id"] and rows[4]["id"] not in raw["eval"]["id"]
    qa.preprocess(raw["train"], training=True)
    features = qa.preprocess(raw["eval"], training=False)
    assert set(features["example_id"]) == {r["id"] for i, r in enumerate(rows) if i != 4}


def test_mostly_blank_qa_contexts_fail(tokenizer) -> None:
    rows = [{**r, "context": ""} if i else r for i, r in enumerate(tiny.qa_rows(3))]
    with pytest.raises(
        DataError, match=r"Column 'context' of the train data is empty .* 2 of 3 rows; .*context_column"
    ):
        qa_task(tokenizer).prepare(splits(rows))


def test_a_context_without_tokens_labels_no_answer(tokenizer) -> None:
    """Below the row check: a window with no context tokens gets the CLS label instead of an IndexError."""
    rows = tiny.qa_rows(2)
    qa = qa_task(tokenizer)
    qa.prepare(splits(rows))
    blank = Dataset.from_list([{**rows[0], "context": " \t "}])
    cls = tokenizer.cls_token_id
    for training in (True, False):
        features = qa.preprocess(blank, training=training)
        assert features[0]["input_ids"][features[0]["start_positions"]] == cls


def test_a_job_with_an_empty_context_trains_and_evaluates(tmp_path, monkeypatch, tiny_encoder) -> None:
    rows = [{**r, "context": ""} if i == 3 else r for i, r in enumerate(tiny.qa_rows(8))]
    data = write_rows(tmp_path / "data" / "t.jsonl", rows).parent
    hps = {"task": "question-answering", "model_name_or_path": str(tiny_encoder), "max_seq_length": 64,
           "doc_stride": 24, "epochs": 1, "train_batch_size": 8, "per_device_eval_batch_size": 8}  # fmt: skip
    job = make_tree(tmp_path, hps, {"train": data, "validation": data})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 0, job.failure
    assert job.results()["eval_samples"] == 7 and "eval_f1" in job.results()


# Item 12: failure reasons name the column and the line, never the data.


def test_mixed_schema_jsonl_names_column_and_line_not_data(tmp_path) -> None:
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 2}, {"text": [SECRET], "label": "b"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError) as caught:
        load_path(path)
    message = str(caught.value)
    assert "column 'text' at line 4 is of type list, unlike at line 1 (string)" in message
    assert SECRET not in message and "'b'" not in message


def test_mixed_schema_json_array_names_the_record(tmp_path) -> None:
    (tmp_path / "m.json").write_text(json.dumps([{"n": None}, {"n": 1}, {"n": 2}, {"n": SECRET}]))
    with pytest.raises(DataError, match=r"column 'n' at record 4 is of type string, unlike at record 2 \(number\)"):
        load_path(tmp_path / "m.json")


def test_keys_missing_from_the_first_row_are_kept(tmp_path) -> None:
    (tmp_path / "k.jsonl").write_text('{"text": "a"}\n{"text": "b", "label": 1}\n')
    assert load_path(tmp_path / "k.jsonl").to_list() == [{"text": "a", "label": None}, {"text": "b", "label": 1}]


def test_csv_column_of_numbers_and_words(tmp_path) -> None:
    """pandas types a long csv chunk by chunk: a column of numbers that turns to words mixed int and str, and Arrow
    refused it quoting a value."""
    lines = "".join(f"{i},a\n" for i in range(300_000))
    (tmp_path / "big.csv").write_text(f"text,label\n{lines}{SECRET},b\n")
    dataset = load_path(tmp_path / "big.csv")
    assert dataset.features["text"].dtype in ("string", "large_string") and dataset[-1]["text"] == SECRET


def test_other_failure_reasons_carry_no_data(tmp_path) -> None:
    answers = [{"text": "c", "answer_start": SECRET}]
    nested = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", "answers": answers}]}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(nested))
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text,label\n" + SECRET.encode() + b",1\n")[:-8])
    for name, pattern in (
        ("squad.json", r"malformed: an entry is not an object or an answer_start not an integer"),
        ("latin.csv", r"not UTF-8 text \(invalid byte at offset 14\)"),
        ("cut.csv.gz", r"not a complete gzip file"),
    ):
        with pytest.raises(DataError, match=pattern) as caught:
            load_path(tmp_path / name)
        assert SECRET not in str(caught.value) and "0xe9" not in str(caught.value)


def test_unreadable_qa_answers_are_not_quoted(tokenizer) -> None:
    rows = tiny.qa_rows(2)
    rows[1] = {**rows[1], "answers": json.dumps({"text": ["red"], "answer_start": [SECRET]})}
    rows[0] = {**rows[0], "answers": json.dumps(rows[0]["answers"])}
    with pytest.raises(DataError, match=r"Row 'q0-1': cannot read column 'answers'") as caught:
        qa_task(tokenizer).prepare(splits(rows))
    assert SECRET not in str(caught.value)
