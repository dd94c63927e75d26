"""Text classification: one text (or a pair) -> one label; labels may be strings or integers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
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
from sm_train.tasks.base import Task, capped_length, find_column, reference_split, require_columns, require_text

logger = logging.getLogger(__name__)


class TextClassification(Task):
    name = "text-classification"
    Args = TextClassificationArgs
    model_class = AutoModelForSequenceClassification
    metric_names = METRIC_NAMES[name]

    def __init__(self, args: TextClassificationArgs, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(args, tokenizer)
        requested = args.max_seq_length or min(512, tokenizer.model_max_length)
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
        feature = reference.features[self.label_column]
        if isinstance(feature, ClassLabel):
            self.label_names = list(feature.names)
            self.label2id = {i: i for i in range(len(self.label_names))}
        else:
            values = self._label_values(reference, where)
            self.string_labels = any(isinstance(v, str) for v in values)
            self.label_names = [str(v) for v in values]
            self.label2id = {v: i for i, v in enumerate(values)}
        if "eval" in raw and where == "train":
            eval_values = {self.label_key(v) for v in self._label_values(raw["eval"], "eval")}
            unseen = sorted(v for v in eval_values if v not in self.label2id)
            if unseen:
                raise DataError(
                    f"Evaluation labels {unseen[:10]} do not occur in the training data "
                    f"(training labels: {self.label_names[:20]}); the model cannot predict them."
                )
        if len(self.label_names) < 2:
            raise DataError(f"Column {self.label_column!r} has a single label {self.label_names}; need at least two.")
        logger.info("%d labels: %s", len(self.label_names), self.label_names[:20])
        return raw

    def _label_values(self, split: Dataset, where: str) -> list[Any]:
        values = split.unique(self.label_column)
        if any(_empty_label(v) for v in values):
            # Missing like a null (an empty CSV field), not a class of its own named "" or "nan".
            count = sum(1 for v in split[self.label_column] if _empty_label(v))
            raise DataError(
                f"Column {self.label_column!r} of the {where} data has {count} empty labels (blank text or NaN); "
                "fill or drop those rows."
            )
        if any(isinstance(v, float) for v in values):
            if not all(float(v).is_integer() for v in values):
                raise DataError(
                    f"Column {self.label_column!r} of the {where} data holds non-integer numbers; text classification "
                    "needs class labels (regression is not supported)."
                )
            values = [int(v) for v in values]
        if any(isinstance(v, str) for v in values):
            values = [str(v) for v in values]
        if any(isinstance(v, list | dict) for v in values):
            raise DataError(f"Column {self.label_column!r} holds lists or objects; expected one label per row.")
        return sorted(set(values))

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

    def collator(self, model: PreTrainedModel) -> DataCollatorWithPadding:
        # Dynamic padding: each batch to its own longest row (rounded up to the multiple on a GPU), never every row
        # to max_seq_length.
        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_multiple)

    def compute_metrics(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(np.argmax(logits, axis=-1), prediction.label_ids, len(self.label_names))

    def card(self) -> dict[str, Any]:
        return {"labels": self.label_names}

    def label_key(self, value: Any) -> Any:
        """A raw label as label2id knows it: 1.0 -> 1 (pandas floats), 1 -> '1' when the labels are strings."""
        if isinstance(value, float):
            value = int(value)
        return str(value) if self.string_labels else value


def _empty_label(value: Any) -> bool:
    return (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and np.isnan(value))
