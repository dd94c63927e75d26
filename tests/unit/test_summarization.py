import logging
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, EvalPrediction, Seq2SeqTrainingArguments

from sm_train.errors import ConfigError, DataError
from sm_train.metrics import rouge
from sm_train.tasks.summarization import Summarization, SummarizationArgs, decode
from tests import tiny


@pytest.fixture(scope="module")
def bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_seq2seq(tmp_path_factory.mktemp("bart"), "bart")


@pytest.fixture(scope="module")
def t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_seq2seq(tmp_path_factory.mktemp("t5"), "t5")


def loaded(path: Path):
    return AutoModelForSeq2SeqLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def training_args(tmp_path: Path, **values) -> Seq2SeqTrainingArguments:
    return Seq2SeqTrainingArguments(output_dir=str(tmp_path), report_to="none", **values)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def configured(path: Path, tmp_path: Path, training: dict | None = None, **args) -> tuple[Summarization, object]:
    """A task built with the model's tokenizer and configured for the model; returns it and the model."""
    model, tokenizer = loaded(path)
    task = Summarization(SummarizationArgs(**args), tokenizer)
    task.configure(model, training_args(tmp_path, **(training or {})))
    return task, model


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (("id", "dialogue", "summary"), ("dialogue", "summary")),
        (("document", "summary", "id"), ("document", "summary")),
        (("article", "highlights"), ("article", "highlights")),
        (("text", "summary"), ("text", "summary")),
    ],
)
def test_known_layouts(tokenizer, columns, expected) -> None:
    task = Summarization(SummarizationArgs(), tokenizer)
    task.prepare(DatasetDict({"train": Dataset.from_dict({c: ["x"] for c in columns})}))
    assert (task.text_column, task.summary_column) == expected


def test_custom_columns_and_unknown_layouts(tokenizer) -> None:
    raw = DatasetDict({"train": Dataset.from_dict({"conversation": ["x"], "gist": ["y"]})})
    with pytest.raises(DataError, match=r"Cannot tell the text and summary columns .*\['conversation', 'gist'\]"):
        Summarization(SummarizationArgs(), tokenizer).prepare(raw)
    task = Summarization(SummarizationArgs(text_column="conversation", summary_column="gist"), tokenizer)
    task.prepare(raw)
    assert (task.text_column, task.summary_column) == ("conversation", "gist")
    with pytest.raises(DataError, match="summary_column='abstract': no such column"):
        Summarization(SummarizationArgs(text_column="conversation", summary_column="abstract"), tokenizer).prepare(raw)
    # Only one of the two given: the other comes from the known layouts.
    raw = DatasetDict({"train": Dataset.from_dict({"chat": ["x"], "summary": ["y"]})})
    task = Summarization(SummarizationArgs(text_column="chat"), tokenizer)
    task.prepare(raw)
    assert (task.text_column, task.summary_column) == ("chat", "summary")


def test_empty_summaries_fail(tokenizer) -> None:
    raw = DatasetDict({"train": Dataset.from_dict({"dialogue": ["x", "y"], "summary": ["a", None]})})
    empty = r"Column 'summary' of the train data has 1 empty value \(row 1, counting from 0\)"
    with pytest.raises(DataError, match=empty):
        Summarization(SummarizationArgs(), tokenizer).prepare(raw)


def test_t5_models_get_the_prefix(t5, bart, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    task, _ = configured(t5, tmp_path)
    assert task.prefix == "summarize: " and "prefix 'summarize: '" in caplog.text
    assert task.card() == {"source_prefix": "summarize: "}
    task, _ = configured(bart, tmp_path)
    assert task.prefix == ""
    task, _ = configured(t5, tmp_path, source_prefix="tl;dr: ")
    assert task.prefix == "tl;dr: "


def test_prefix_is_in_the_encoded_inputs(t5, tmp_path) -> None:
    model, tokenizer = loaded(t5)
    task = Summarization(SummarizationArgs(), tokenizer)
    raw = task.prepare(DatasetDict({"train": Dataset.from_list(tiny.dialogues(2))}))
    task.configure(model, training_args(tmp_path))
    encoded = task.preprocess(raw["train"], training=True)
    assert tokenizer.decode(encoded[0]["input_ids"]).startswith("summarize :")
    assert tokenizer.decode(encoded[0]["labels"], skip_special_tokens=True) == tiny.dialogues(2)[0]["summary"].replace(
        " .", "."
    )


@pytest.mark.parametrize(
    ("args", "training", "expected"),
    [
        ({}, {}, (128, 1)),  # max_target_length, never transformers' default of 20
        ({"val_max_target_length": 60}, {}, (60, 1)),
        ({"val_max_target_length": 60}, {"generation_max_length": 42, "generation_num_beams": 3}, (42, 3)),
    ],
)
def test_generation_config_follows_evaluation(bart, tmp_path, args, training, expected) -> None:
    _, model = configured(bart, tmp_path, training, **args)
    assert (model.generation_config.max_length, model.generation_config.num_beams) == expected
    model.save_pretrained(tmp_path / "saved")
    saved = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "saved").generation_config
    assert (saved.max_length, saved.num_beams) == expected


def test_model_beams_are_kept(bart, tmp_path) -> None:
    model, tokenizer = loaded(bart)
    model.generation_config.num_beams = 4
    Summarization(SummarizationArgs(), tokenizer).configure(model, training_args(tmp_path))
    assert model.generation_config.num_beams == 4


def test_decode_replaces_label_padding(bart) -> None:
    _, tokenizer = loaded(bart)
    ids = tokenizer(["alice likes red .", "bob likes blue ."], padding=True)["input_ids"]
    batch = np.array(ids)
    batch[batch == tokenizer.pad_token_id] = -100
    batch = np.concatenate([batch, np.full((2, 3), -100)], axis=1)  # Trainer's padding across batches
    with pytest.raises(OverflowError):
        tokenizer.batch_decode(batch, skip_special_tokens=True)
    assert decode(batch, tokenizer) == ["alice likes red.", "bob likes blue."]


def test_rouge_known_values() -> None:
    assert rouge(["alice likes red."], ["alice likes red."]) == pytest.approx(dict.fromkeys(
        ("rouge1", "rouge2", "rougeL", "rougeLsum"), 100.0))  # fmt: skip
    assert rouge(["bob hates blue"], ["alice likes red"])["rouge1"] == 0.0
    assert rouge(["alice liked red"], ["alice likes red"])["rouge1"] == pytest.approx(100.0)  # stemming
    # Lsum scores sentence by sentence: reordered sentences keep Lsum, lose L.
    scores = rouge(["bob sings. alice dances."], ["alice dances. bob sings."])
    assert scores["rougeLsum"] == pytest.approx(100.0) and scores["rougeL"] < 100.0


def test_score_and_gen_len(bart) -> None:
    _, tokenizer = loaded(bart)
    task = Summarization(SummarizationArgs(), tokenizer)
    generated = np.array(tokenizer(["alice likes red .", "bob likes blue . too"], padding=True)["input_ids"])
    labels = np.array(tokenizer(["alice likes red .", "bob likes blue ."], padding=True)["input_ids"])
    labels[labels == tokenizer.pad_token_id] = -100
    metrics, predictions = task.score(EvalPrediction(predictions=generated, label_ids=labels))
    assert metrics["rouge1"] == pytest.approx(100 * (1 + 6 / 7) / 2)
    unpadded = [len(ids) for ids in tokenizer(["alice likes red .", "bob likes blue . too"])["input_ids"]]
    assert metrics["gen_len"] == pytest.approx(sum(unpadded) / 2)  # [CLS] ... [SEP] included, padding not
    assert predictions == ["alice likes red.", "bob likes blue. too"]


def test_summaries_come_back_in_the_data_order(bart, tmp_path) -> None:
    """Evaluation runs longest first (set_eval's order); the summaries are written in the evaluation data's order."""
    _, tokenizer = loaded(bart)
    task = Summarization(SummarizationArgs(), tokenizer)
    rows = Dataset.from_dict({"dialogue": ["a", "b", "c"], "summary": ["x", "y", "z"]})
    texts = ["bob likes blue .", "carol likes green . and red .", "alice likes red ."]  # rows 1, 2, 0
    generated = np.array(tokenizer(texts, padding=True)["input_ids"])
    task.set_eval(rows, rows, np.array([1, 2, 0]))
    metrics, predictions = task.score(EvalPrediction(predictions=generated, label_ids=generated.copy()))
    assert metrics["rouge1"] == pytest.approx(100.0)
    assert predictions == ["alice likes red.", "bob likes blue.", "carol likes green. and red."]
    task.write_predictions(tmp_path / "out", predictions)
    written = (tmp_path / "out" / "generated_predictions.txt").read_text(encoding="utf-8")
    assert written == "alice likes red.\nbob likes blue.\ncarol likes green. and red.\n"
    task.write_predictions(tmp_path / "none", None)  # no evaluation ran: nothing written
    assert not (tmp_path / "none").exists()


def test_lengths_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="'max_target_length' must be at least 1"):
        SummarizationArgs(max_target_length=0)


# Blank summaries: dropped with a count, and all blank fails.


def test_all_blank_summaries_fail(tokenizer) -> None:
    raw = tiny.splits([{"dialogue": f"d{i}", "summary": s} for i, s in enumerate(["", "  ", "\n"])])
    with pytest.raises(DataError, match=r"Column 'summary' of the train data is empty or only whitespace in 3 of 3"):
        Summarization(SummarizationArgs(), tokenizer).prepare(raw)


def test_blank_summaries_are_dropped_with_a_count(tokenizer, caplog) -> None:
    train = [{"dialogue": f"d{i}", "summary": "" if i in (1, 3) else f"s{i}"} for i in range(6)]
    evaluation = [
        {"dialogue": "e0", "summary": " "},
        {"dialogue": "e1", "summary": "s"},
        {"dialogue": "e2", "summary": "t"},
    ]
    raw = tiny.splits(train, evaluation)
    caplog.set_level(logging.WARNING)
    prepared = Summarization(SummarizationArgs(), tokenizer).prepare(raw)
    assert len(raw["train"]) == 6 and len(raw["eval"]) == 3  # the given splits are not changed
    raw = prepared
    assert raw["train"]["dialogue"] == ["d0", "d2", "d4", "d5"] and raw["eval"]["dialogue"] == ["e1", "e2"]
    assert "dropping 2 of 6 train rows whose 'summary' is empty" in caplog.text
    assert "dropping 1 of 3 eval rows" in caplog.text
