"""Text classification's labels, read off one split's label column: their shape (one class per row, a number per
row, a list of classes per row), the problem type that makes (catalog.PROBLEM_TYPES), and the failures of mixed
shapes. Pure functions over datasets; no tokenizer, no model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Sequence

from sm_train.catalog import MULTI_LABEL, REGRESSION, SINGLE_LABEL
from sm_train.errors import DataError
from sm_train.tasks.base import arrow_column, is_list_type

# A decimal number written as text: '0.5', '-3', '1e-3' (not 'nan' or 'inf', which are class names).
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
LIST_TEXT = 'a JSON list such as ["sports", "politics"]'


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


def empty_label(value: Any) -> bool:
    return (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and np.isnan(value))


def parsed(value: Any) -> Any:
    """A raw label as its shape reads: a list, or the text of a JSON list (a CSV cell), is a list; else as given."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            found = json.loads(value)
        except ValueError:
            return value
        return found if isinstance(found, list) else value
    return value


def number(value: Any) -> float | None:
    """The number a label is, or reads as when it is text ('0.5'); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def decimal(value: Any) -> bool:
    """A number (or its text) that is not a whole number: a score, not a class."""
    found = number(value)
    return found is not None and np.isfinite(found) and not found.is_integer()


@dataclass(frozen=True)
class Column:
    """One split's label column: 'lists' (a list of classes per row) or 'single' (one value per row), and the
    distinct labels (for lists, the distinct classes in them)."""

    name: str
    where: str
    shape: str
    values: list[Any]

    def first_row(self, split: Dataset, test: Any) -> str:
        """'row N: value' of the first row whose value passes test (failure messages only: reads row by row)."""
        for row, value in enumerate(split[self.name]):
            if test(parsed(value)):
                return f"row {row}: {json.dumps(value) if not isinstance(value, str) else repr(value)}"
        return "no row"


def read_column(split: Dataset, name: str, where: str) -> Column:
    """The shape and distinct labels of one split's label column; lists and single labels mixed fail, naming the
    first row of each (a CSV column can hold JSON lists as text beside plain text)."""
    column = arrow_column(split, name)
    if is_list_type(column.type):
        elements = pc.list_flatten(column)
        if elements.null_count:
            raise DataError(
                f"Column {name!r} of the {where} data has lists of labels with empty (null) entries; remove them "
                "(an empty list is a row without labels)."
            )
        return Column(name, where, "lists", _elements(pc.unique(elements).to_pylist(), name, where))
    values = split.unique(name)
    if any(isinstance(v, dict) for v in values):
        raise DataError(f"Column {name!r} of the {where} data holds objects; expected one label or a list per row.")
    as_read = [parsed(v) for v in values]
    lists = [v for v in as_read if isinstance(v, list)]
    if lists and len(lists) < len(as_read):
        column = Column(name, where, "mixed", [])
        raise DataError(
            f"Column {name!r} of the {where} data mixes lists of labels ({column.first_row(split, _is_list)}) and "
            f"single labels ({column.first_row(split, _not_list)}): give every row a list ({LIST_TEXT}; [] for "
            "none) for multi-label classification, or one label per row."
        )
    if lists:
        return Column(name, where, "lists", _elements([e for v in lists for e in v], name, where))
    return Column(name, where, "single", values)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _not_list(value: Any) -> bool:
    return not isinstance(value, list)


def _elements(elements: list[Any], name: str, where: str) -> list[Any]:
    """The distinct classes of lists of labels: text or integers, never lists, objects or missing values."""
    wrong = [e for e in elements if isinstance(e, list | dict) or e is None or empty_label(e) or decimal(e)]
    if wrong:
        raise DataError(
            f"Column {name!r} of the {where} data has lists whose entries are not class labels ({wrong[:3]}); each "
            f"entry must be a class name or an integer, as in {LIST_TEXT}."
        )
    return list(dict.fromkeys(elements))


def resolve(requested: str, column: Column, split: Dataset) -> str:
    """The problem type of the labels in column (the reference split's), as requested ('auto': read off them)."""
    name, where = column.name, column.where
    if column.shape == "lists":
        if requested in ("auto", MULTI_LABEL):
            return MULTI_LABEL
        raise DataError(
            f"Column {name!r} of the {where} data holds a list of labels per row "
            f"({column.first_row(split, _is_list)}), but problem_type={requested} needs one label per row; set "
            f"problem_type={MULTI_LABEL} (or auto), or give one label per row."
        )
    if requested == MULTI_LABEL:
        raise DataError(
            f"problem_type={MULTI_LABEL} needs a list of labels per row ({LIST_TEXT}), but column {name!r} of the "
            f"{where} data holds one label per row ({column.first_row(split, _not_list)})."
        )
    decimals = [v for v in column.values if decimal(v)]
    words = [v for v in column.values if number(v) is None]
    if requested == REGRESSION or (requested == "auto" and decimals and not words):
        check_shape(REGRESSION, column, split)
        return REGRESSION
    if decimals and words and requested == "auto":  # a CSV column of scores with a stray word reads as text
        raise DataError(
            f"Column {name!r} of the {where} data mixes numbers that are not whole "
            f"({column.first_row(split, decimal)}) with text ({column.first_row(split, _word)}): set "
            f"problem_type={SINGLE_LABEL} to read them all as class names, or fix the labels. Numbers that are not "
            f"all whole are regression targets (problem_type={REGRESSION})."
        )
    if any(isinstance(v, float) for v in decimals):  # 0.5 as a class id would be 0 (canonical)
        raise DataError(
            f"Column {name!r} of the {where} data holds numbers that are not whole "
            f"({column.first_row(split, decimal)}): classes must be integers or text. Set problem_type={REGRESSION} "
            "(or auto) to predict the numbers."
        )
    return SINGLE_LABEL


def _word(value: Any) -> bool:
    return number(value) is None


def check_shape(problem: str, column: Column, split: Dataset) -> None:
    """The labels of column fit the problem type (found on the reference split): another shape fails naming the
    column, the split and the first row."""
    name, where = column.name, column.where
    if problem == MULTI_LABEL and column.shape != "lists":
        first = column.first_row(split, _not_list)
        raise DataError(
            f"Column {name!r} of the {where} data holds one label per row ({first}), but the labels are lists "
            f"(multi-label classification): give every row a list ({LIST_TEXT}; [] for none)."
        )
    if problem != MULTI_LABEL and column.shape == "lists":
        raise DataError(
            f"Column {name!r} of the {where} data holds lists of labels ({column.first_row(split, _is_list)}), but "
            f"the labels are one per row ({problem}): give one label per row in every split."
        )
    if problem == REGRESSION and any(number(v) is None for v in column.values):
        raise DataError(
            f"Column {name!r} of the {where} data holds text that is not a number ({column.first_row(split, _word)}),"
            f" but the labels are numbers (problem_type={REGRESSION}): fix or drop that row."
        )


def refuse_variants(values: list[Any], name: str, where: str) -> None:
    """Refuse text labels that differ only by case or surrounding whitespace ('pos', 'pos '): a data mistake."""
    spellings: dict[str, list[str]] = {}
    for label in dict.fromkeys(values):
        spellings.setdefault(str(label).strip().casefold(), []).append(label)
    variants = [" vs ".join(repr(v) for v in group[:3]) for group in spellings.values() if len(group) > 1]
    if variants:
        raise DataError(
            f"Column {name!r} of the {where} data has labels that differ only by case or surrounding whitespace: "
            f"{'; '.join(variants[:3])}; each spelling would become a class of its own. Clean the labels (strip the "
            "whitespace, one spelling per class) and upload the data again."
        )


def class_names(feature: Any) -> list[str] | None:
    """The names of a ClassLabel feature, or of the ClassLabel inside a list feature; None for other features."""
    inner = feature.feature if isinstance(feature, Sequence) else feature
    if isinstance(feature, list) and feature:
        inner = feature[0]
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def has_labels(split: Dataset, column: str) -> bool:
    read = arrow_column(split, column)
    if read.null_count == len(split):
        return False
    if is_list_type(read.type):
        return True
    values = split.unique(column)
    if class_names(split.features[column]) is not None:
        return any(v is not None and v >= 0 for v in values)
    return not all(v is None or empty_label(v) for v in values)


def refuse_empty(column: Column, split: Dataset) -> None:
    """Blank text or NaN labels are missing, not a class of its own named "" or "nan"."""
    if column.shape == "single" and any(empty_label(v) for v in column.values):
        count = sum(1 for v in split[column.name] if empty_label(v))
        raise DataError(
            f"Column {column.name!r} of the {column.where} data has {count} empty labels (blank text or NaN); "
            "fill or drop those rows."
        )


def keys(column: Column) -> list[Any]:
    """The distinct labels in their canonical form (label_key without the text rule), numbers first."""
    return sorted_keys(canonical(v) for v in column.values)


def sorted_keys(keys: Iterable[Any]) -> list[Any]:
    found = set(keys)
    return sorted(k for k in found if not isinstance(k, str)) + sorted(k for k in found if isinstance(k, str))
