"""Text classification: one text (or a pair) -> one label; labels may be strings or integers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sm_train.catalog import METRIC_NAMES, TextClassificationArgs
from sm_train.errors import DataError
from sm_train.metrics import classification_metrics
from sm_train.tasks.base import (
    Task,
    arrow_column,
    capped_length,
    find_column,
    reference_split,
    require_columns,
    require_text,
)

logger = logging.getLogger(__name__)


class TextClassification(Task):
    name = "text-classification"
    Args = TextClassificationArgs
    model_class = AutoModelForSequenceClassification
    metric_names = METRIC_NAMES[name]

    def __init__(self, args: TextClassificationArgs, tokenizer: PreTrainedTokenizerBase | None) -> None:
        super().__init__(args, tokenizer)
        requested = args.max_seq_length or min(512, 512 if tokenizer is None else tokenizer.model_max_length)
        self.max_length = capped_length("max_seq_length", requested, tokenizer)
        # Found in prepare: the columns, and the labels as the model will know them.
        self.pretokenized = False
        self.label_column, self.text_column = "", None
        self.string_labels = False
        self.label_names: list[str] = []
        self.label2id: dict[Any, int] = {}

    def prepare(self, raw: DatasetDict) -> DatasetDict:
        where = reference_split(raw)
        reference = raw[where]
        self.pretokenized = "input_ids" in reference.column_names
        self.label_column = find_column(reference, self.args.label_column, ("label", "labels"), "label_column", where)
        columns = [self.label_column]
        texts = {}
        if self.pretokenized:
            columns.append("input_ids")
        else:
            self.text_column = find_column(
                reference, self.args.text_column, ("text", "sentence"), "text_column", where
            )
            texts[self.text_column] = "text_column"
            if self.args.text_pair_column:
                pair = find_column(reference, self.args.text_pair_column, (), "text_pair_column", where)
                texts[pair] = "text_pair_column"
        require_columns(raw, [*columns, *texts], where)
        raw = require_text(raw, texts)
        for split_name in raw if self.pretokenized else ():
            self._check_token_ids(raw[split_name], split_name)
        feature = reference.features[self.label_column]
        if isinstance(feature, ClassLabel):
            self.label_names = list(feature.names)
            self.label2id = {i: i for i in range(len(self.label_names))}
        else:
            keys = self._label_values(reference, where)
            self.string_labels = any(isinstance(k, str) for k in keys)
            values = sorted({self.label_key(k) for k in keys})  # all-integer labels in numeric order
            self._refuse_variants(values, where)
            self.label_names = [str(v) for v in values]
            self.label2id = {v: i for i, v in enumerate(values)}
        if "eval" in raw and where == "train":
            evaluation = self._label_values(raw["eval"], "eval")
            if self.string_labels:
                self._refuse_variants([self.label_key(k) for k in evaluation], "eval")
                self._refuse_variants([*self.label2id, *(self.label_key(k) for k in evaluation)], "train and eval")
            unseen = [k for k in evaluation if self.label_key(k) not in self.label2id]
            if unseen:  # the values' repr: 1 and '1' are the same label, 'pos' and 1 are not
                raise DataError(
                    f"Evaluation labels {unseen[:10]} do not occur in the training data "
                    f"(training labels: {list(self.label2id)[:20]}); the model cannot predict them."
                )
        if len(self.label_names) < 2:
            raise DataError(f"Column {self.label_column!r} has a single label {self.label_names}; need at least two.")
        logger.info("%d labels: %s", len(self.label_names), self.label_names[:20])
        return raw

    def _label_values(self, split: Dataset, where: str) -> list[Any]:
        """The split's distinct labels in their canonical form (label_key without the text rule), numbers first."""
        values = split.unique(self.label_column)
        if any(_empty_label(v) for v in values):
            # Missing like a null (an empty CSV field), not a class of its own named "" or "nan".
            count = sum(1 for v in split[self.label_column] if _empty_label(v))
            raise DataError(
                f"Column {self.label_column!r} of the {where} data has {count} empty labels (blank text or NaN); "
                "fill or drop those rows."
            )
        if any(isinstance(v, float) and not v.is_integer() for v in values):
            raise DataError(
                f"Column {self.label_column!r} of the {where} data holds non-integer numbers; text classification "
                "needs class labels (regression is not supported)."
            )
        if any(isinstance(v, list | dict) for v in values):
            raise DataError(f"Column {self.label_column!r} holds lists or objects; expected one label per row.")
        keys = {canonical(v) for v in values}
        return sorted(k for k in keys if not isinstance(k, str)) + sorted(k for k in keys if isinstance(k, str))

    def _refuse_variants(self, labels: list[Any], where: str) -> None:
        """Refuse text labels that differ only by case or surrounding whitespace ('pos', 'pos '): a data mistake."""
        spellings: dict[str, list[str]] = {}
        for label in dict.fromkeys(labels):
            spellings.setdefault(str(label).strip().casefold(), []).append(label)
        variants = [" vs ".join(repr(v) for v in group[:3]) for group in spellings.values() if len(group) > 1]
        if variants:
            raise DataError(
                f"Column {self.label_column!r} of the {where} data has labels that differ only by case or surrounding "
                f"whitespace: {'; '.join(variants[:3])}; each spelling would become a class of its own. Clean the "
                "labels (strip the whitespace, one spelling per class) and upload the data again."
            )

    def _check_token_ids(self, split: Dataset, where: str) -> None:
        """Pre-tokenized rows hold lists of integers; with a tokenizer, ids inside its vocabulary and rows no longer
        than max_length: the model would fail at its first step with an IndexError. Read by Arrow, not row by row."""
        column = arrow_column(split, "input_ids")
        kind, lists = column.type, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)
        if not isinstance(kind, lists) or not pa.types.is_integer(kind.value_type):
            raise DataError(
                f"Column 'input_ids' of the {where} data is of type {kind}, not lists of integer token ids. Save the "
                "tokenized data as JSON lines, parquet or a save_to_disk folder (CSV holds the lists as text), or "
                "give the text instead and let the job tokenize it."
            )
        if self.tokenizer is None:
            return
        vocabulary, limit, rows = len(self.tokenizer), self.max_length, len(split)
        fix = (
            "Tokenize the text with the model's own tokenizer (AutoTokenizer.from_pretrained(model_name_or_path)) "
            f"with truncation=True, max_length={limit}"
        )
        flat = pc.list_flatten(column)
        lowest, highest = pc.min_max(flat).values()
        if flat.null_count or (highest.is_valid and (lowest.as_py() < 0 or highest.as_py() >= vocabulary)):
            array = column.combine_chunks()  # one array: its parent indices are row numbers
            flat = pc.list_flatten(array)
            wrong = pc.invert(pc.and_(pc.greater_equal(flat, 0), pc.less(flat, vocabulary)).fill_null(False))
            bad_rows = pc.unique(pc.filter(pc.list_parent_indices(array), wrong))
            counts = {
                f"at or above {vocabulary}": pc.sum(pc.greater_equal(flat, vocabulary)).as_py() or 0,
                "negative": pc.sum(pc.less(flat, 0)).as_py() or 0,
                "missing (null)": flat.null_count,
            }
            found = ", ".join(f"{count} {what}" for what, count in counts.items() if count)
            raise DataError(
                f"Column 'input_ids' of the {where} data has token ids outside the model's vocabulary (0 to "
                f"{vocabulary - 1}) in {len(bad_rows)} of {rows} rows (ids: {found}); the first is row "
                f"{pc.min(bad_rows).as_py()} (counting from 0). {fix}; the ids of another tokenizer mean other words."
            )
        lengths = pc.list_value_length(column)
        too_long = pc.greater(lengths, limit)
        if count := pc.sum(too_long).as_py():
            model_limit = self.tokenizer.model_max_length
            raise_it = f", or set max_seq_length up to {model_limit}" if limit < model_limit else ""
            raise DataError(
                f"{count} of {rows} rows of the {where} data are longer than max_seq_length={limit} tokens in "
                f"'input_ids' (up to {pc.max(lengths).as_py()}); the first is row {pc.index(too_long, True).as_py()} "
                f"(counting from 0). The model takes at most {limit} tokens per row. {fix}{raise_it}."
            )

    def model_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.label_names),
            "id2label": dict(enumerate(self.label_names)),
            "label2id": {name: i for i, name in enumerate(self.label_names)},
            # A base model that already has a classifier for other labels gets a new head, not a crash.
            "ignore_mismatched_sizes": True,
        }

    def preprocess(self, split: Dataset, *, training: bool, num_proc: int | None = None) -> Dataset:
        label_column, label2id, label_key = self.label_column, self.label2id, self.label_key
        if self.pretokenized:
            logger.info("the data is already tokenized (input_ids): using it as is, with labels mapped to ids")
            return split.map(
                lambda batch: {"labels": [label2id[label_key(v)] for v in batch[label_column]]},
                batched=True,
                remove_columns=[label_column] if label_column != "labels" else None,
                num_proc=num_proc,
                desc="Mapping labels",
            )
        text, pair, max_length, tokenizer = (
            self.text_column,
            self.args.text_pair_column,
            self.max_length,
            self.tokenizer,
        )

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            texts = [str(t) for t in batch[text]]
            pairs = [str(t) for t in batch[pair]] if pair else None
            encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
            encoded["labels"] = [label2id[label_key(v)] for v in batch[label_column]]
            return encoded

        return split.map(encode, batched=True, remove_columns=split.column_names, num_proc=num_proc, desc="Tokenizing")

    def collator(self, model: PreTrainedModel, pad_multiple: int | None) -> DataCollatorWithPadding:
        # Dynamic padding: each batch to its own longest row (rounded up to the multiple on a GPU), never every row
        # to max_seq_length.
        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_multiple)

    def score(self, prediction: EvalPrediction) -> tuple[dict[str, float], None]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(np.argmax(logits, axis=-1), prediction.label_ids, len(self.label_names)), None

    def card(self) -> dict[str, Any]:
        return {"labels": self.label_names}

    def label_key(self, value: Any) -> Any:
        """A raw label as label2id knows it: canonical (1.0 and '1' are 1), then text when the labels are text."""
        value = canonical(value)
        return str(value) if self.string_labels else value


def canonical(value: Any) -> Any:
    """One label, whatever the file made of it: an integer-valued number (1.0, pandas' floats) and its decimal string
    ('1', a JSON string) are the integer 1; other text stays text ('01', ' 1' and '1.5' too)."""
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            return value
        return number if str(number) == value else value
    return value


def _empty_label(value: Any) -> bool:
    return (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and np.isnan(value))
