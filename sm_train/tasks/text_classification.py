"""Text classification: one text (or a pair) -> one label (string or integer labels), a number (regression) or a set
of labels (multi-label); tasks/labels.py reads which from the labels, and problem_type can say it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Sequence, Value
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sm_train.catalog import METRIC_NAMES, REGRESSION, SINGLE_LABEL, TextClassificationArgs
from sm_train.tasks.base import (
    Task,
    capped_length,
    find_column,
    in_dataset_order,
    labelled_splits,
    reference_split,
    require_columns,
    require_text,
)
from sm_train.tasks.classification_labels import ClassificationLabels
from sm_train.tasks.predictions import row_ids, with_ids, write_test_predictions
from sm_train.tasks.token_ids import check_token_ids

logger = logging.getLogger(__name__)


class TextClassification(ClassificationLabels, Task):
    name = "text-classification"
    Args = TextClassificationArgs
    model_class = AutoModelForSequenceClassification
    metric_names = METRIC_NAMES[name]
    lora_task_type = "SEQ_CLS"

    def __init__(self, args: TextClassificationArgs, tokenizer: PreTrainedTokenizerBase | None) -> None:
        super().__init__(args, tokenizer)
        requested = args.max_seq_length or min(512, 512 if tokenizer is None else tokenizer.model_max_length)
        self.max_length = capped_length("max_seq_length", requested, tokenizer)
        # Found in prepare: the columns (the labels: ClassificationLabels).
        self.pretokenized = False
        self.text_column: str | None = None
        # set_eval: the evaluation rows' ids, and the row each feature came from (features are in length order).
        self.row_ids: list[Any] = []
        self.feature_rows: Any = None

    def prepare(self, raw: DatasetDict) -> DatasetDict:
        where = reference_split(raw)
        reference = raw[where]
        self.trains = "train" in raw
        self.pretokenized = "input_ids" in reference.column_names
        self.label_column = self._label_column(reference, where)
        raw = self.without_empty_test_labels(raw)
        inputs, texts = [], {}
        if self.pretokenized:
            inputs.append("input_ids")
        else:
            self.text_column = find_column(
                reference, self.args.text_column, ("text", "sentence"), "text_column", where
            )
            texts[self.text_column] = "text_column"
            if self.args.text_pair_column:
                pair = find_column(reference, self.args.text_pair_column, (), "text_pair_column", where)
                texts[pair] = "text_pair_column"
        labelled = labelled_splits(raw, self.label_column)
        require_columns(raw, [*inputs, *texts], where)
        require_columns(labelled, [self.label_column], reference_split(labelled) if labelled else where)
        raw = require_text(raw, texts)
        for split_name in raw if self.pretokenized else ():
            check_token_ids(raw[split_name], split_name, self.tokenizer, self.max_length)
        self.read_labels(labelled)
        return raw

    def _label_column(self, reference: Dataset, where: str) -> str:
        """The label column; a test set may come without labels (predictions only), so there it need not exist."""
        if where != "test":
            return find_column(reference, self.args.label_column, ("label", "labels"), "label_column", where)
        present = [c for c in ("label", "labels") if c in reference.column_names]
        return self.args.label_column or (present[0] if present else "label")

    def model_kwargs(self) -> dict[str, Any]:
        if not self.trains:
            return {}  # the model's own head and labels (configure reads them)
        kwargs: dict[str, Any] = {"num_labels": len(self.label_names) or 1, "problem_type": self.problem_type}
        if self.problem_type != REGRESSION:
            kwargs |= {
                "id2label": dict(enumerate(self.label_names)),
                "label2id": {name: i for i, name in enumerate(self.label_names)},
            }
        # A base model that already has a classifier for other labels gets a new head, not a crash.
        return kwargs | {"ignore_mismatched_sizes": True}

    def configure(self, model: PreTrainedModel, args: Any) -> None:
        """Without training, the model's labels are the ones predicted (models.load passed none)."""
        if not self.trains:
            self.use_model_labels(model.config)

    def preprocess(self, split: Dataset, *, training: bool, num_proc: int | None = None) -> Dataset:
        label_column = self.label_column
        encode_labels = self.label_encoder() if label_column in split.column_names else None
        if self.pretokenized:
            logger.info("the data is already tokenized (input_ids): using it as is, with labels mapped to ids")
            if encode_labels is None:
                return split
            features = split.map(
                lambda batch: {"labels": encode_labels(batch[label_column])},
                batched=True,
                remove_columns=[label_column] if label_column != "labels" else None,
                num_proc=num_proc,
                desc="Mapping labels",
            )
            return self._typed(features)
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
            if encode_labels is not None:
                encoded["labels"] = encode_labels(batch[label_column])
            return encoded

        features = split.map(
            encode, batched=True, remove_columns=split.column_names, num_proc=num_proc, desc="Tokenizing"
        )
        return self._typed(features)

    def _typed(self, features: Dataset) -> Dataset:
        """Regression and multi-label losses (MSE, BCE with logits) take float32 labels."""
        if "labels" not in features.column_names or self.problem_type == SINGLE_LABEL:
            return features
        kind = Value("float32") if self.problem_type == REGRESSION else Sequence(Value("float32"))
        return features.cast_column("labels", kind)

    def collator(self, model: PreTrainedModel, pad_multiple: int | None) -> DataCollatorWithPadding:
        # Dynamic padding: each batch to its own longest row (rounded up to the multiple on a GPU), never every row
        # to max_seq_length.
        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_multiple)

    def set_eval(self, examples: Dataset, features: Dataset, order: Any) -> None:
        """One feature per row: the order puts the predictions back in the data's order, led by the rows' ids."""
        self.row_ids, self.feature_rows = row_ids(examples), order

    def score(self, prediction: EvalPrediction) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """The metrics of the problem type (none without labels) and each row's prediction, in the data's order."""
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        metrics, rows = self.scored(np.asarray(logits, dtype=np.float64), prediction.label_ids)
        ids = self.row_ids if len(self.row_ids) == len(rows) else list(range(len(rows)))
        return metrics, with_ids(ids, in_dataset_order(rows, self.feature_rows))

    def write_predictions(self, directory: Path, predictions: Any, split: str = "eval") -> None:
        """A test set's predictions (predictions.TEST_FILE); the evaluation's are not written."""
        if predictions is not None and split == "test":
            write_test_predictions(directory, predictions)

    def card(self) -> dict[str, Any]:
        return {"labels": self.label_names, "problem_type": self.problem_type}
