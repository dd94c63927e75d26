"""The predictions file of a test set, the same for every task: `test_predictions.jsonl` in the output data dir, one
JSON object per test row, in the data's order, each with the row's `id` (its id column, else its row number from 0)
and the task's prediction (text classification: label and score, or score alone for regression, or labels for
multi-label; question answering: answer, score, start, end; summarization: summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets import Dataset

TEST_FILE = "test_predictions.jsonl"


def row_ids(examples: Dataset) -> list[Any]:
    """Each row's id: the `id` column when the data has one, else the row number (from 0)."""
    if "id" in examples.column_names:
        return examples["id"][:]  # the whole column at once: iterating a column reads it row by row
    return list(range(len(examples)))


def with_ids(ids: list[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one prediction, in the data's order, each led by its row's id."""
    return [{"id": row_id, **row} for row_id, row in zip(ids, rows, strict=True)]


def write_test_predictions(directory: Path, rows: list[dict[str, Any]]) -> Path:
    """test_predictions.jsonl: one JSON object per line (UTF-8, not ASCII-escaped)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / TEST_FILE
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path
