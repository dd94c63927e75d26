"""Pre-tokenized text classification data (input_ids given, as the Hugging Face SageMaker notebooks upload it):
lists of integer ids inside the tokenizer's vocabulary, no row longer than the model takes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from sm_train.errors import DataError
from sm_train.tasks.base import arrow_column, is_list_type


def check_token_ids(split: Dataset, where: str, tokenizer: PreTrainedTokenizerBase | None, limit: int) -> None:
    """Pre-tokenized rows hold lists of integers; with a tokenizer, ids inside its vocabulary and rows no longer
    than max_length: the model would fail at its first step with an IndexError. Read by Arrow, not row by row."""
    column = arrow_column(split, "input_ids")
    kind = column.type
    if not is_list_type(kind) or not pa.types.is_integer(kind.value_type):
        raise DataError(
            f"Column 'input_ids' of the {where} data is of type {kind}, not lists of integer token ids. Save the "
            "tokenized data as JSON lines, parquet or a save_to_disk folder (CSV holds the lists as text), or "
            "give the text instead and let the job tokenize it."
        )
    if tokenizer is None:
        return
    vocabulary, rows = len(tokenizer), len(split)
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
        model_limit = tokenizer.model_max_length
        raise_it = f", or set max_seq_length up to {model_limit}" if limit < model_limit else ""
        raise DataError(
            f"{count} of {rows} rows of the {where} data are longer than max_seq_length={limit} tokens in "
            f"'input_ids' (up to {pc.max(lengths).as_py()}); the first is row {pc.index(too_long, True).as_py()} "
            f"(counting from 0). The model takes at most {limit} tokens per row. {fix}{raise_it}."
        )
