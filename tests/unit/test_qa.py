import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, DatasetDict
from transformers import EvalPrediction

from sm_train import cli
from sm_train.data import load_path
from sm_train.errors import ConfigError, DataError
from sm_train.metrics import normalize_answer, squad_metrics
from sm_train.tasks.qa_spans import Windows, answer_list, best_answers
from sm_train.tasks.question_answering import QuestionAnswering, QuestionAnsweringArgs
from tests import tiny
from tests.jobs import make_tree, write_rows

# "aa bb cc dd ee ff": two windows that overlap on "cc dd"; None marks question and special tokens.
CONTEXT = "aa bb cc dd ee ff"
WORDS = {"aa": (0, 2), "bb": (3, 5), "cc": (6, 8), "dd": (9, 11), "ee": (12, 14), "ff": (15, 17)}
HEAD = [None, None, None]  # [CLS] question [SEP]
FEATURES = [
    {
        "example_id": "e",
        "cls_index": 0,
        "offset_mapping": [*HEAD, *(WORDS[w] for w in ("aa", "bb", "cc", "dd")), None],
    },
    {
        "example_id": "e",
        "cls_index": 0,
        "offset_mapping": [*HEAD, *(WORDS[w] for w in ("cc", "dd", "ee", "ff")), None],
    },
]
WINDOWS = Windows.from_table(pa.Table.from_pylist(FEATURES))
CONTEXTS = {"e": CONTEXT}


def answer(start: dict, end: dict, **options) -> tuple[dict, dict]:
    start_logits, end_logits = np.full((2, 8), -10.0), np.full((2, 8), -10.0)
    for (window, token), value in start.items():
        start_logits[window, token] = value
    for (window, token), value in end.items():
        end_logits[window, token] = value
    return best_answers(CONTEXTS, WINDOWS, start_logits, end_logits, **options)


def test_answer_across_the_window_overlap() -> None:
    # Window 0 sees "dd" (score 6); window 1 sees all of "dd ee" (score 9).
    answers, nbest = answer({(0, 6): 5.0, (1, 4): 5.0}, {(0, 6): 1.0, (1, 5): 4.0})
    assert answers == {"e": "dd ee"}
    assert [c["text"] for c in nbest["e"]][:2] == ["dd ee", "dd"]
    assert [c["score"] for c in nbest["e"]] == sorted((c["score"] for c in nbest["e"]), reverse=True)


def test_spans_longer_than_max_answer_length_are_skipped() -> None:
    start, end = {(0, 3): 9.0, (0, 5): 2.0}, {(0, 6): 9.0, (0, 5): 1.0}
    assert answer(start, end)[0] == {"e": "aa bb cc dd"}
    assert answer(start, end, max_answer_length=2)[0] == {"e": "cc dd"}
    assert answer(start, end, max_answer_length=1)[0] == {"e": "cc"}


def test_spans_outside_the_context_or_reversed_are_skipped() -> None:
    # The strongest start is in the question (offset None); the next is after the strongest end.
    start, end = {(0, 1): 20.0, (0, 6): 9.0, (0, 4): 1.0}, {(0, 5): 9.0}
    assert answer(start, end)[0] == {"e": "bb cc"}


def test_squad_v2_null_answer_and_threshold() -> None:
    start, end = {(0, 0): 5.0, (1, 0): 6.0, (0, 4): 3.0}, {(0, 0): 5.0, (1, 0): 6.0, (0, 4): 3.0}
    # Null score = min over windows (10) beats the best span (6).
    assert answer(start, end, with_negative=True)[0] == {"e": ""}
    assert answer(start, end, with_negative=True, null_score_diff_threshold=5.0)[0] == {"e": "bb"}
    assert answer(start, end, with_negative=False)[0] == {"e": "bb"}


def test_examples_without_features_get_an_empty_answer() -> None:
    answers, nbest = best_answers({"lost": "x"}, WINDOWS, np.zeros((2, 8)), np.zeros((2, 8)))
    assert answers == {"lost": ""} and nbest == {"lost": []}


def test_windows_of_a_sliced_table() -> None:
    # A dataset cut with select(range(...)) is a slice of its Arrow table: token bounds index the unsliced tokens.
    windows = Windows.from_table(pa.Table.from_pylist(FEATURES).slice(1))
    first, last = windows.bounds
    assert windows.example_ids == ["e"] and windows.cls_index.tolist() == [0]
    assert windows.span_starts[first:last].tolist() == [-1, -1, -1, 6, 9, 12, 15, -1]
    assert windows.span_ends[first:last].tolist() == [-1, -1, -1, 8, 11, 14, 17, -1]


def test_squad_metrics_normalization_and_v2_groups() -> None:
    assert normalize_answer("The  Red, car!") == "red car"
    result = squad_metrics(
        {"a": "the red car", "b": "", "c": "dark blue"}, {"a": ["Red car"], "b": [], "c": ["blue"]}, True
    )
    assert result["exact_match"] == pytest.approx(200 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
    assert result["HasAns_total"] == 2 and result["NoAns_total"] == 1 and result["NoAns_exact"] == 100.0
    assert "HasAns_f1" not in squad_metrics({"a": "x"}, {"a": ["x"]}, False)


@pytest.mark.parametrize(
    "value",
    [
        {"text": ["red"], "answer_start": [3]},
        [{"text": "red", "answer_start": 3}],
        '{"text": ["red"], "answer_start": [3]}',
    ],
)
def test_answer_shapes(value) -> None:
    assert answer_list(value) == {"text": ["red"], "answer_start": [3]}


def test_nested_squad_json_v1_and_v2(tmp_path: Path) -> None:
    rows = tiny.qa_rows(6, unanswerable_every=3)
    (tmp_path / "v2.json").write_text(json.dumps(tiny.squad_nested(rows, version_2=True)))
    flat = load_path(tmp_path / "v2.json")
    assert flat.column_names == ["id", "title", "context", "question", "answers"]
    assert flat[2]["answers"] == {"text": [], "answer_start": []}
    assert flat[0]["answers"] == rows[0]["answers"] and flat[0]["context"] == rows[0]["context"]
    (tmp_path / "v1.json").write_text(json.dumps(tiny.squad_nested(rows[:2])))
    assert len(load_path(tmp_path / "v1.json")) == 2


def test_malformed_nested_squad(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(
        json.dumps({"data": [{"title": "t", "paragraphs": [{"qas": [{"id": "1", "question": "q"}]}]}]})
    )
    with pytest.raises(DataError, match="nested SQuAD JSON .* malformed: missing or bad 'context'"):
        load_path(tmp_path / "bad.json")


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def task(tokenizer=None, **args) -> QuestionAnswering:
    args = {"max_seq_length": 64, "doc_stride": 24, **args}
    return QuestionAnswering(QuestionAnsweringArgs(**args), tokenizer or tiny.build_tokenizer())


def prepared(qa: QuestionAnswering, rows: list[dict], eval_rows: list[dict] | None = None) -> DatasetDict:
    raw = DatasetDict(
        {"train": Dataset.from_list(rows), "eval": Dataset.from_list(rows if eval_rows is None else eval_rows)}
    )
    return qa.prepare(raw)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_windows_label_the_answer_tokens(tokenizer, padding_side) -> None:
    tokenizer.padding_side = padding_side
    rows = tiny.qa_rows(8)
    qa = task(tokenizer)
    raw = prepared(qa, rows)
    features = qa.preprocess(raw["train"], training=True)
    assert len(features) > 2 * len(rows)  # long contexts: several windows each
    answered = [f for f in features if f["start_positions"] != f["input_ids"].index(tokenizer.cls_token_id)]
    assert answered
    for feature in answered:
        span = feature["input_ids"][feature["start_positions"] : feature["end_positions"] + 1]
        assert tokenizer.decode(span).strip() in tiny.COLORS
    tokenizer.padding_side = "right"


def test_eval_features_keep_offsets_and_ids(tokenizer) -> None:
    rows = tiny.qa_rows(4)
    qa = task(tokenizer)
    raw = prepared(qa, rows)
    features = qa.preprocess(raw["eval"], training=False)
    assert set(features["example_id"]) == {r["id"] for r in rows}
    first = features[0]
    assert first["offset_mapping"][0] is None  # [CLS]
    context_offsets = [o for o in first["offset_mapping"] if o is not None]
    assert context_offsets and all(0 <= a <= b <= len(rows[0]["context"]) for a, b in context_offsets)


def test_doc_stride_without_room_for_the_question(tokenizer) -> None:
    with pytest.raises(ConfigError, match=r"doc_stride=56 leaves no room for the question: .*Use doc_stride < "):
        prepared(task(tokenizer, doc_stride=56), tiny.qa_rows(2))
    with pytest.raises(ConfigError, match="doc_stride=64 must be smaller than max_seq_length=64"):
        QuestionAnsweringArgs(max_seq_length=64, doc_stride=64)


def test_slow_tokenizers_are_refused(tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(type(tokenizer), "is_fast", property(lambda self: False))
    with pytest.raises(ConfigError, match="needs a fast tokenizer"):
        prepared(task(tokenizer), tiny.qa_rows(2))


def test_answer_start_must_point_at_the_answer(caplog) -> None:
    rows = tiny.qa_rows(10)
    shifted = [{**r, "answers": {"text": r["answers"]["text"], "answer_start": [r["answers"]["answer_start"][0] + 1]}}
               for r in rows]  # fmt: skip
    with pytest.raises(DataError, match="10 of 10 answered train rows have an answer_start that does not point"):
        prepared(task(), shifted)
    caplog.set_level(logging.WARNING)
    prepared(task(), shifted[:3] + rows[3:])
    assert "3 of 10 answered train rows" in caplog.text


def test_missing_columns_and_unanswerable_without_v2(caplog) -> None:
    with pytest.raises(DataError, match="answer_column='answers': no such column"):
        prepared(task(), [{"id": "1", "question": "q", "context": "c"}])
    caplog.set_level(logging.WARNING)
    prepared(task(), tiny.qa_rows(6, unanswerable_every=2))
    assert "have no answer: set version_2_with_negative=true" in caplog.text


def test_columns_must_be_in_every_split_without_nulls() -> None:
    rows = tiny.qa_rows(4)
    nulls = [{**r, "context": None} if i == 2 else r for i, r in enumerate(rows)]
    empty = r"Column 'context' of the train data has 1 empty value \(row 2, counting from 0\)"
    with pytest.raises(DataError, match=empty):
        prepared(task(), nulls)
    without_question = [{k: v for k, v in r.items() if k != "question"} for r in rows]
    with pytest.raises(DataError, match="The eval data has no 'question' column, which the train data has"):
        prepared(task(), rows, eval_rows=without_question)
    without_answers = [{k: v for k, v in r.items() if k != "answers"} for r in rows]
    with pytest.raises(DataError, match="answer_column='answers': no such column in the eval data"):
        prepared(task(), rows, eval_rows=without_answers)


def test_answers_as_json_text_and_integer_ids() -> None:
    rows = [
        {**r, "id": 7 + i, "answers": json.dumps(r["answers"]) if i else ""} for i, r in enumerate(tiny.qa_rows(3))
    ]
    raw = prepared(task(), rows)
    assert raw["eval"]["id"][:] == ["7", "8", "9"]
    assert raw["eval"]["answers"][:] == [
        {"text": [], "answer_start": []},
        *(r["answers"] for r in tiny.qa_rows(3)[1:]),
    ]


def test_evaluation_maps_window_logits_back_to_answers(tokenizer) -> None:
    rows = tiny.qa_rows(6, unanswerable_every=3)
    qa = task(tokenizer, version_2_with_negative=True)
    raw = prepared(qa, rows)
    features = qa.preprocess(raw["eval"], training=False)
    qa.set_eval(raw["eval"], features, None)
    # Logits that point at each window's labelled span, padded with -100 to the longest window as Trainer does.
    width = max(len(ids) for ids in features["input_ids"])
    start_logits, end_logits = np.full((len(features), width), -100.0), np.full((len(features), width), -100.0)
    for index, feature in enumerate(features):
        start_logits[index, : len(feature["input_ids"])] = end_logits[index, : len(feature["input_ids"])] = 0.0
        start_logits[index, feature["start_positions"]] = end_logits[index, feature["end_positions"]] = 5.0
    metrics, (answers, nbest) = qa.score(EvalPrediction(predictions=(start_logits, end_logits), label_ids=None))
    assert answers == {r["id"]: (r["answers"]["text"] or [""])[0] for r in rows}
    assert set(nbest) == set(answers)
    assert metrics["exact_match"] == 100.0 and metrics["NoAns_total"] == 2


def test_duplicate_or_missing_ids_are_renumbered() -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in tiny.qa_rows(3)]
    raw = prepared(task(), rows)
    assert raw["train"]["id"][:] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("answers", "texts", "starts"),
    [
        ({"text": ["red"], "answer_start": [3, 9, 12]}, 1, 3),
        ({"text": ["red", "blue"], "answer_start": [3]}, 2, 1),
        ({"text": [], "answer_start": [4]}, 0, 1),
        (json.dumps({"text": ["red"], "answer_start": []}), 1, 0),
    ],
)
def test_answers_with_unequal_texts_and_offsets_fail(answers, texts, starts) -> None:
    """1 text and 3 starts trained on the first pair and dropped the rest, silently. The row number counts the rows
    as given, blank contexts (dropped later) included."""
    rows = tiny.qa_rows(4)
    evaluation = [{**r, "answers": json.dumps(r["answers"])} for r in rows] if isinstance(answers, str) else rows
    evaluation = [{**evaluation[0], "context": ""}, *evaluation[1:]]
    evaluation[2] = {**evaluation[2], "answers": answers}
    pattern = (
        rf"Row 2 of the eval data \(counting from 0\) has {texts} answer texts but {starts} answer_start offsets in "
        r"column 'answers'; give each answer one text and one answer_start \(two lists of the same length\)."
    )
    with pytest.raises(DataError, match=pattern):
        prepared(task(), rows, eval_rows=evaluation)
    evaluation[2] = rows[2] if not isinstance(answers, str) else {**rows[2], "answers": json.dumps(rows[2]["answers"])}
    assert len(prepared(task(), rows, eval_rows=evaluation)["eval"]) == 3  # the blank context dropped


# Empty contexts are dropped or fail; unreadable answers are named, never quoted.

SECRET = "s3cr3t-row-content"  # data that must never reach a failure reason


def test_blank_qa_contexts_are_dropped_from_training_and_evaluation(tokenizer, caplog) -> None:
    rows = tiny.qa_rows(6)
    train = [{**r, "context": ""} if i == 2 else r for i, r in enumerate(rows)]
    evaluation = [{**r, "context": "   "} if i == 4 else r for i, r in enumerate(rows)]
    qa = task(tokenizer)
    caplog.set_level(logging.WARNING)
    raw = qa.prepare(tiny.splits(train, evaluation))
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
        task(tokenizer).prepare(tiny.splits(rows))


def test_a_context_without_tokens_labels_no_answer(tokenizer) -> None:
    """Below the row check: a window with no context tokens gets the CLS label instead of an IndexError."""
    rows = tiny.qa_rows(2)
    qa = task(tokenizer)
    qa.prepare(tiny.splits(rows))
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


def test_unreadable_qa_answers_are_not_quoted(tokenizer) -> None:
    rows = tiny.qa_rows(2)
    rows[1] = {**rows[1], "answers": json.dumps({"text": ["red"], "answer_start": [SECRET]})}
    rows[0] = {**rows[0], "answers": json.dumps(rows[0]["answers"])}
    with pytest.raises(DataError, match=r"Row 'q0-1': cannot read column 'answers'") as caught:
        task(tokenizer).prepare(tiny.splits(rows))
    assert SECRET not in str(caught.value)
