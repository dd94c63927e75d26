"""The Task contract: what one kind of fine-tuning declares. Tasks never build a Trainer, resume, save or log
metrics; runner.py does that for all of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Value
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments

from sm_train.errors import DataError

logger = logging.getLogger(__name__)


class Task:
    """How raw rows become model inputs and how predictions are scored.

    A job (runner.run) uses a task in this order; each step may rely on the ones before it:

    1. ``Task(args, tokenizer)``: built from its hyperparameters (``Args``) once the tokenizer has loaded; no data.
       It sets ``max_length`` (input tokens); ``target_length(training)`` is the limit of text labels.
    2. ``prepare(raw)``: the raw splits ("train", "eval" and/or "test"), before any model loads. Check columns,
       labels and tokenizer fit, remember what later steps read (columns, labels) and return the splits to use (rows
       dropped or normalised in new datasets: the given dict is not changed). A "test" split may lack the labels
       (answers, summaries): it is then predicted without metrics. ``card()`` is read here for the run identity.
       ``check`` also builds a task with tokenizer None (the tokenizer did not load) and runs only this step: the
       column, type and label checks run, the ones that need a tokenizer (lengths, windows, pre-tokenized ids) are
       skipped.
    3. ``model_kwargs()``: extra from_pretrained arguments; then ``configure(model, training_args)``.
    4. ``preprocess(split, training=..., num_proc=...)``: model inputs, per split. Skipped when an earlier attempt's
       tokenized cache holds them: nothing a later step needs may be set here.
    5. ``set_eval(examples, features, order)``: whenever there is evaluation data, after step 4 or the cache. The
       runner hands the features in length order: ``order[i]`` is where the i-th stood as preprocess made them (one
       per example for most tasks: the example's position); ``in_dataset_order(rows, order)`` puts per-feature
       results back. The task keeps what its evaluations read.
    6. ``collator(model, pad_multiple)``: batches padded up to a multiple of ``pad_multiple`` tokens, the runner's
       choice for the device (device.pad_multiple); None: each batch to its longest row.
    7. ``preprocess_logits`` and ``score(prediction) -> (metrics, predictions)`` during every evaluation. Trainer
       gets the metrics through ``Evaluations`` (its compute_metrics, made by the runner), which keeps the last
       evaluation's readable predictions (None for a task that has none to write).
    8. With a test set, after the final evaluation: ``set_eval`` again with the test rows, and ``score`` through
       Trainer.predict (``score`` gets ``label_ids`` None when the test set has no labels: no metrics, only the
       predictions).
    9. ``write_predictions(directory, predictions, split)`` with the last evaluation's predictions (None when none
       ran) and split "eval", then the test set's with split "test" (tasks/predictions.py: one format for every
       task), and ``card()``, on the main process.

    The runner sets no attribute of a task: what a hook needs arrives as its arguments, what it makes for the job
    is returned.
    """

    name: ClassVar[str]
    Args: ClassVar[type]  # dataclass of task hyperparameters (transformers-examples names)
    model_class: ClassVar[Any]  # an Auto* model class
    training_args_class: ClassVar[type[TrainingArguments]] = TrainingArguments
    trainer_class: ClassVar[type[Trainer]] = Trainer
    metric_names: ClassVar[tuple[str, ...]] = ()  # the metrics score returns, without the eval_ prefix
    training_defaults: ClassVar[dict[str, Any]] = {}  # below the user's values, above sm_train's own defaults
    best_metric: ClassVar[str | None] = None  # metric_for_best_model when load_best_model_at_end is on
    # use_lora: peft's TaskType name for the model_class (SEQ_CLS, QUESTION_ANS, SEQ_2_SEQ_LM, ...); None: no LoRA.
    lora_task_type: ClassVar[str | None] = None

    def __init__(self, args: Any, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.args = args
        self.tokenizer = tokenizer
        # Input tokens per row (or per window), the model's limit applied (capped_length); None: no cut.
        self.max_length: int | None = None

    def prepare(self, raw: DatasetDict) -> DatasetDict:
        """Check the raw splits and return the ones to use (see the class docstring, step 2)."""
        return raw

    def model_kwargs(self) -> dict[str, Any]:
        """Extra from_pretrained arguments (label maps, ...)."""
        return {}

    def configure(self, model: PreTrainedModel, args: TrainingArguments) -> None:
        """Adjust the loaded model before training (e.g. its generation config)."""

    def preprocess(self, split: Dataset, *, training: bool, num_proc: int | None = None) -> Dataset:
        """Model inputs (with labels) for one split; batched `map` with num_proc workers."""
        raise NotImplementedError

    def target_length(self, training: bool) -> int | None:
        """Label tokens per row, for tasks whose labels are text (training, or evaluation); None: not cut."""
        return None

    def set_eval(self, examples: Dataset, features: Dataset, order: Any) -> None:
        """The evaluation rows, the model inputs made from them (in length order) and that order (class docstring,
        step 5), for tasks that map predictions back."""

    def collator(self, model: PreTrainedModel, pad_multiple: int | None) -> Callable | None:
        return None

    def score(self, prediction: EvalPrediction) -> tuple[dict[str, float], Any]:
        """One evaluation's metrics (the names in metric_names) and its readable predictions (None: none)."""
        raise NotImplementedError

    def preprocess_logits(self, logits: Any, labels: Any) -> Any:
        """What evaluation keeps of each batch's logits until score (default: everything)."""
        return logits

    def write_predictions(self, directory: Path, predictions: Any, split: str = "eval") -> None:
        """Write the predictions score returned for a split (None when no evaluation ran): "eval", the last
        evaluation's, for tasks whose answers are worth reading; "test", a test set's (rank 0 only)."""

    def card(self) -> dict[str, Any]:
        """Task facts for the model card and the resolved config (e.g. the label names)."""
        return {}


class Evaluations:
    """Trainer's compute_metrics for a task, made by the runner: Trainer gets each evaluation's metrics (a dict, its
    contract) and the readable predictions of the last one stay in ``last``, for write_predictions."""

    def __init__(self, task: Task) -> None:
        self.score = task.score
        self.last: Any = None

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        metrics, self.last = self.score(prediction)
        return metrics


def in_dataset_order(rows: list[Any], order: Any) -> list[Any]:
    """Per-feature results of an evaluation, made in set_eval's order, back in the evaluation data's order; order
    None: as they are."""
    if order is None:
        return rows
    ordered: list[Any] = [None] * len(rows)
    for position, row in zip(order, rows, strict=True):
        ordered[position] = row
    return ordered


def reference_split(raw: DatasetDict) -> str:
    """The split whose columns and labels the others must match: train, else eval, else test."""
    return next(split for split in ("train", "eval", "test") if split in raw)


def find_column(split: Dataset, given: str | None, defaults: tuple[str, ...], hyperparameter: str, where: str) -> str:
    """The column named by a hyperparameter, else the first default present; DataError listing the columns."""
    columns = split.column_names
    if given is not None:
        if given in columns:
            return given
        raise DataError(f"{hyperparameter}={given!r}: no such column in the {where} data. Columns: {columns}.")
    for name in defaults:
        if name in columns:
            return name
    names = " or ".join(repr(d) for d in defaults)
    raise DataError(
        f"The {where} data has no {names} column (columns: {columns}); set the {hyperparameter} hyperparameter."
    )


SHOWN_ROWS = 5  # the empty values' row numbers a message names


def require_columns(raw: DatasetDict, columns: Iterable[str], reference: str) -> None:
    """Every split has the columns found in the reference split, with no empty values in them (the first rows that
    have one are named, counting from 0 as the split was read)."""
    for where, split in raw.items():
        for column in columns:
            if column not in split.column_names:
                raise DataError(
                    f"The {where} data has no {column!r} column, which the {reference} data has "
                    f"(columns: {split.column_names}); give every split the same columns."
                )
            nulls = null_count(split, column)
            if nulls:
                rows = np.flatnonzero(pc.is_null(arrow_column(split, column)).to_numpy(zero_copy_only=False))
                shown = ", ".join(str(row) for row in rows[:SHOWN_ROWS]) + (
                    f" and {nulls - SHOWN_ROWS} more" if nulls > SHOWN_ROWS else ""
                )
                raise DataError(
                    f"Column {column!r} of the {where} data has {nulls} empty value{'s' * (nulls > 1)} "
                    f"(row{'s' * (nulls > 1)} {shown}, counting from 0); fill or drop "
                    f"{'those rows' if nulls > 1 else 'that row'}."
                )


def null_count(split: Dataset, column: str) -> int:
    """Missing values in one column, counted by Arrow."""
    return arrow_column(split, column).null_count


def arrow_column(split: Dataset, column: str) -> Any:
    return split.select_columns([column]).with_format("arrow")[:].column(0)


def is_list_type(kind: pa.DataType) -> bool:
    """An Arrow list type of any kind (list, large list, fixed-size list)."""
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def labelled_splits(raw: DatasetDict, column: str) -> DatasetDict:
    """The splits that carry `column` (labels, summaries): every split but a test set predicted without it."""
    return DatasetDict({s: split for s, split in raw.items() if s != "test" or column in split.column_names})


def require_text(raw: DatasetDict, columns: dict[str, str], drop_blank_in: str | None = None) -> DatasetDict:
    """Text columns ({column: its hyperparameter}) hold strings in every split. Anything else would be tokenized as
    its Python repr (a list<string> column trains on "['a', 'b']"), and numbers there mean the wrong column.

    drop_blank_in: a column without which a row means nothing (a summary, a QA context): rows where it is empty or
    only whitespace are dropped with a counted warning, and most rows blank fails the job. Returns the splits
    (new ones where rows were dropped)."""
    kept = DatasetDict()
    for where, split in raw.items():
        for column, hyperparameter in columns.items():
            feature = split.features[column]
            if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
                arrow_type = split.features.arrow_schema.field(column).type
                raise DataError(
                    f"Column {column!r} of the {where} data is of type {arrow_type}, not text: it must hold one "
                    "string per row. Join lists into one string (or cast numbers to strings) before uploading, or set "
                    f"{hyperparameter} to the column that holds the text (columns: {split.column_names})."
                )
        kept[where] = (
            split if drop_blank_in is None else _drop_blank(split, drop_blank_in, columns[drop_blank_in], where)
        )
    return kept


def _drop_blank(split: Dataset, column: str, hyperparameter: str, where: str) -> Dataset:
    text = arrow_column(split, column)
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).fill_null(False).to_numpy()
    count = int(blank.sum())
    if count * 2 > len(split):
        raise DataError(
            f"Column {column!r} of the {where} data is empty or only whitespace in {count} of {len(split)} rows; "
            f"fill it, or set {hyperparameter} to the right column (columns: {split.column_names})."
        )
    if count:
        logger.warning(
            "dropping %d of %d %s rows whose %r is empty or only whitespace", count, len(split), where, column
        )
    return split.select(np.flatnonzero(~blank)) if count else split


def capped_length(name: str, requested: int, tokenizer: PreTrainedTokenizerBase | None) -> int:
    """A token length no longer than the model takes (longer inputs crash in its position embeddings); without a
    tokenizer (``check`` when it did not load), the requested one."""
    limit = requested if tokenizer is None else tokenizer.model_max_length
    if requested > limit:
        logger.warning("%s=%d exceeds the model's %d tokens; using %d", name, requested, limit, limit)
        return limit
    return requested


def token_lengths(features: Dataset) -> Any:
    """Each row's number of input tokens, read by Arrow (not row by row)."""
    return pc.list_value_length(arrow_column(features, "input_ids")).to_numpy(zero_copy_only=False)


def length_order(features: Dataset) -> Any:
    """Positions of the rows, longest input first."""
    return np.argsort(-token_lengths(features), kind="stable")
