"""Text classification's labels as the task keeps them (a part of TextClassification): the problem type and the label
names read off the labelled splits (prepare), or the model's own when the job trains nothing (configure), the labels
as the model takes them (preprocess), and its outputs as metrics and readable rows (score). tasks/labels.py holds the
pure reading of one label column."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import DatasetDict

from sm_train.catalog import MULTI_LABEL, REGRESSION, SINGLE_LABEL, TextClassificationArgs
from sm_train.errors import DataError
from sm_train.metrics import classification_metrics, multi_label_metrics, regression_metrics
from sm_train.tasks import labels
from sm_train.tasks.base import reference_split

logger = logging.getLogger(__name__)
SPLIT_NAMES = {"eval": "Evaluation", "test": "Test"}


class ClassificationLabels:
    """The label state of TextClassification, set in prepare (and, without training, in configure)."""

    args: TextClassificationArgs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trains = False  # a train split: the labels are the training data's, else the model's (configure)
        self.label_column = ""
        self.problem_type: str | None = None  # catalog.PROBLEM_TYPES (not auto); None: no labels read yet
        self.string_labels = False
        self.label_names: list[str] = []
        self.label2id: dict[Any, int] = {}  # label_key(raw label) -> class id
        self.numeric = False  # every label read is a number (a regression model may evaluate them)

    def without_empty_test_labels(self, raw: DatasetDict) -> DatasetDict:
        """A test set whose label column is absent or empty (nulls, blanks, a ClassLabel's -1) is predicted without
        metrics: the column goes."""
        test, column = raw.get("test"), self.label_column
        if test is None or column not in test.column_names or labels.has_labels(test, column):
            return raw
        logger.info("the test data has no labels in %r: predictions only, no test metrics", column)
        return DatasetDict({**raw, "test": test.remove_columns(column)})

    def read_labels(self, labelled: DatasetDict) -> None:
        """The problem type and label names of the labelled splits: the training data's when there is one (the
        others' labels must occur in it), else all of them (configure checks them against the model's)."""
        if not labelled:
            self.problem_type = None if self.args.problem_type == "auto" else self.args.problem_type
            return
        where = reference_split(labelled)
        columns = {s: labels.read_column(split, self.label_column, s) for s, split in labelled.items()}
        for s, column in columns.items():
            labels.refuse_empty(column, labelled[s])
        names = labels.class_names(labelled[where].features[self.label_column])
        requested = self.args.problem_type
        if names is None:
            problem = labels.resolve(requested, columns[where], labelled[where])
        else:
            problem = MULTI_LABEL if columns[where].shape == "lists" else SINGLE_LABEL
            if requested not in ("auto", problem):
                raise DataError(
                    f"Column {self.label_column!r} of the {where} data is a ClassLabel feature (classes "
                    f"{names[:5]}), which makes {problem}; problem_type={requested} does not fit it."
                )
        for s, column in columns.items():
            labels.check_shape(problem, column, labelled[s])
        self.problem_type = problem
        self.numeric = all(labels.number(v) is not None for c in columns.values() for v in c.values)
        if problem == REGRESSION:
            logger.info("regression: one number per row (num_labels=1, mean squared error loss)")
            return
        if names is not None:
            wrong = [v for c in columns.values() for v in c.values if not 0 <= v < len(names)]
            if wrong:
                raise DataError(
                    f"Column {self.label_column!r} has class ids {wrong[:5]} outside its ClassLabel's "
                    f"{len(names)} classes (-1: no label); drop those rows."
                )
            self.label_names, self.label2id = names, {i: i for i in range(len(names))}
        else:
            keys = {s: labels.keys(column) for s, column in columns.items()}
            known = keys[where] if self.trains else labels.sorted_keys(k for found in keys.values() for k in found)
            self.string_labels = any(isinstance(k, str) for k in known)
            values = sorted({self.label_key(k) for k in known})  # all-integer labels in numeric order
            labels.refuse_variants(values, self.label_column, where if self.trains else " and ".join(keys))
            self.label_names = [str(v) for v in values]
            self.label2id = {v: i for i, v in enumerate(values)}
            if self.trains:
                self._known_everywhere(keys)
        if self.trains and len(self.label_names) < 2:
            raise DataError(f"Column {self.label_column!r} has a single label {self.label_names}; need at least two.")
        kind = "multi-label, " if problem == MULTI_LABEL else ""
        logger.info("%s%d labels: %s", kind, len(self.label_names), self.label_names[:20])

    def _known_everywhere(self, keys: dict[str, list[Any]]) -> None:
        """Evaluation and test labels occur in the training data, spelled as there."""
        for split, found in keys.items():
            if split == "train":
                continue
            if self.string_labels:
                labels.refuse_variants([self.label_key(k) for k in found], self.label_column, split)
                known = [*self.label2id, *(self.label_key(k) for k in found)]
                labels.refuse_variants(known, self.label_column, f"train and {split}")
            unseen = [k for k in found if self.label_key(k) not in self.label2id]
            if unseen:  # the values' repr: 1 and '1' are the same label, 'pos' and 1 are not
                raise DataError(
                    f"{SPLIT_NAMES[split]} labels {unseen[:10]} do not occur in the training data "
                    f"(training labels: {list(self.label2id)[:20]}); the model cannot predict them."
                )

    def use_model_labels(self, config: Any) -> None:
        """Without training: the model's problem type and label names (its config.json), which the data's labels
        must fit; a model whose labels have no names (LABEL_0, ...) takes the data's, in their sorted order."""
        count = config.num_labels
        names = [str(config.id2label.get(i, f"LABEL_{i}")) for i in range(count)]
        named = names != [f"LABEL_{i}" for i in range(count)]
        own = config.problem_type or (REGRESSION if count == 1 else None)
        requested = self.args.problem_type
        if requested != "auto" and own not in (None, requested):
            raise DataError(f"problem_type={requested}, but the model is a {own} model (problem_type in its config).")
        problem = requested if requested != "auto" else own or self.problem_type or SINGLE_LABEL
        data = self.problem_type
        if data not in (None, problem) and not (problem == REGRESSION and data == SINGLE_LABEL and self.numeric):
            raise DataError(
                f"The model is a {problem} model ({count} outputs), but the data's labels make {data}: give it data "
                "of its kind, or train a model for these labels (do_train=true)."
            )
        if problem == REGRESSION:
            if count != 1:
                raise DataError(f"Regression needs a model with one output; the model has {count} (num_labels).")
            self.label_names, self.label2id = [], {}
        elif named:
            ids = {name: i for i, name in enumerate(names)}
            unseen = sorted({self.label_names[i] for i in self.label2id.values()} - set(ids))
            if unseen:
                raise DataError(
                    f"Labels {unseen[:10]} of the data are not labels of the model (its id2label: {names[:20]}); "
                    "the model cannot predict them."
                )
            self.label2id = {key: ids[self.label_names[i]] for key, i in self.label2id.items()}
            self.label_names = names
        elif self.label_names:
            if len(self.label_names) != count:
                raise DataError(
                    f"The data has {len(self.label_names)} labels {self.label_names[:20]}, but the model has {count} "
                    "outputs and no label names: train it on these labels first (do_train=true)."
                )
            config.id2label = dict(enumerate(self.label_names))  # saved with the model: it answers with these
            config.label2id = {name: i for i, name in enumerate(self.label_names)}
        else:
            self.label_names = names
        self.problem_type = config.problem_type = problem
        logger.info("predicting with the model's %s head: labels %s", problem, self.label_names[:20])

    def label_key(self, value: Any) -> Any:
        """A raw label as label2id knows it: canonical (1.0 and '1' are 1), then text when the labels are text."""
        value = labels.canonical(value)
        return str(value) if self.string_labels else value

    def label_encoder(self) -> Callable[[list[Any]], list[Any]]:
        """Raw labels -> what the model's loss takes: a class id, a float (regression), a multi-hot float row."""
        label2id, key, count = self.label2id, self.label_key, len(self.label_names)
        if self.problem_type == REGRESSION:
            return lambda values: [labels.number(v) for v in values]
        if self.problem_type == MULTI_LABEL:

            def multi_hot(values: list[Any]) -> list[list[float]]:
                rows = []
                for value in values:
                    row = [0.0] * count
                    for label in labels.parsed(value):
                        row[label2id[key(label)]] = 1.0
                    rows.append(row)
                return rows

            return multi_hot
        return lambda values: [label2id[key(v)] for v in values]

    def scored(self, logits: np.ndarray, label_ids: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """The metrics (none without labels) and each row's prediction: a label and its probability; a number
        (regression); every label whose probability is over 0.5, likeliest first (multi-label)."""
        from scipy.special import expit, softmax

        names, problem = self.label_names, self.problem_type
        if problem == REGRESSION:
            values = logits.reshape(len(logits), -1)[:, 0]
            metrics = {} if label_ids is None else regression_metrics(values, np.asarray(label_ids).reshape(-1))
            return metrics, [{"score": float(v)} for v in values]
        if problem == MULTI_LABEL:
            probabilities = expit(logits)
            chosen = probabilities > 0.5
            metrics = {} if label_ids is None else multi_label_metrics(chosen, np.asarray(label_ids) > 0.5)
            rows = [
                {"labels": [{"label": names[i], "score": float(p[i])} for i in np.argsort(-p, kind="stable") if c[i]]}
                for p, c in zip(probabilities, chosen, strict=True)
            ]
            return metrics, rows
        probabilities = softmax(logits, axis=-1)
        predicted = np.argmax(logits, axis=-1)
        metrics = {} if label_ids is None else classification_metrics(predicted, label_ids, len(names))
        return metrics, [{"label": names[i], "score": float(probabilities[r, i])} for r, i in enumerate(predicted)]
