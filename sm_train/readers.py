"""One data file -> an Arrow table: csv, tsv, json (records, an array, or nested SQuAD), jsonl, parquet; the text
formats may be gzipped. A file that does not parse is reported with its name and line, never with its content; nor
does one whose column names repeat (each reader would keep one of them silently, or rename the other)."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from sm_train.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
TEXT_FORMATS = ("csv", "tsv", "json", "jsonl")  # these may also come gzipped (.csv.gz, .jsonl.gz, ...)


def file_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        kind = FORMATS.get(suffixes[0]) if len(suffixes) == 2 else None
        return kind if kind in TEXT_FORMATS else None
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _read_text(path: Path) -> str:
    """UTF-8 text, with or without a byte-order mark (Excel writes one), gzipped or not."""
    data = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    return data.decode("utf-8-sig")


def _no_repeats(path: Path, names: list[str], where: str, what: str = "column") -> None:
    """A DataError naming the names that occur more than once (empty CSV header cells aside: pandas numbers them)."""
    repeated = [name for name, count in Counter(names).items() if count > 1 and name != ""]
    if repeated:
        raise DataError(
            f"{path}{where} names the {what}s {repeated[:5]} more than once; give every {what} a unique name (rename "
            "or drop the repeats) and upload the file again."
        )


def _header(path: Path, sep: str) -> list[str]:
    """The first non-blank row, read as pandas reads it (pandas would rename a repeated name "text" to "text.1")."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        try:
            return next((row for row in csv.reader(f, delimiter=sep) if row), [])
        except csv.Error:
            return []  # pandas reports what does not parse


class _RepeatedKeys(ValueError):  # args[0]: the object's keys
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; one that repeats a key fails (json keeps the last value silently)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        raise _RepeatedKeys([name for name, _ in pairs])
    return record


_JSON = json.JSONDecoder(object_pairs_hook=_object)


def _csv(path: Path, sep: str) -> pa.Table:
    import pandas as pd

    _no_repeats(path, _header(path, sep), ": the header row")
    try:
        # Only empty fields are missing: a label called "NA" or "null" stays a label. low_memory=False types each
        # column from all its rows: chunk by chunk, a column of numbers and words mixes int and str, which Arrow
        # refuses with a message that quotes a value.
        frame = pd.read_csv(
            path, sep=sep, keep_default_na=False, na_values=[""], encoding="utf-8-sig", low_memory=False
        )
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path} is empty: a {sep!r}-separated file needs a header row and data rows.") from e
    except pd.errors.ParserError as e:
        raise DataError(f"{path} does not parse as {'TSV' if sep == chr(9) else 'CSV'}: {e}".strip()) from e
    return pa.Table.from_pandas(frame, preserve_index=False)


def _json_lines(path: Path, text: str) -> tuple[list[Any], list[str]]:
    """The rows, and where each one is ("line 7") for error messages."""
    rows, places = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_JSON.decode(line))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} line {number} is not valid JSON ({e.msg}); each line must be one JSON object."
            ) from e
        except _RepeatedKeys as e:
            _no_repeats(path, e.args[0], f" line {number}: an object", "key")
        places.append(f"line {number}")
    return rows, places


def _json(path: Path, as_lines: bool) -> pa.Table:
    text = _read_text(path)
    places: list[str] | None = None
    if as_lines:
        rows, places = _json_lines(path, text)
    else:
        try:
            rows = _JSON.decode(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                raise DataError(f"{path} line {e.lineno} column {e.colno} is not valid JSON: {e.msg}.") from e
            rows, places = _json_lines(path, text)  # JSON lines saved with a .json name (Dataset.to_json does that)
        except _RepeatedKeys as e:
            _no_repeats(path, e.args[0], ": an object", "key")
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
        if rows and isinstance(rows[0], dict) and "paragraphs" in rows[0]:
            return squad_rows(rows, path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(
            f"{path}: expected JSON records (one object per line, or an array of objects), "
            f"found {type(rows).__name__}."
        )
    return _records(rows, path, places or [f"record {i}" for i in range(1, len(rows) + 1)])


def _records(rows: list[dict], path: Path, places: list[str]) -> pa.Table:
    """One Arrow column per key of any row (from_pylist would keep only the first row's keys). A column whose rows
    do not share a type fails naming the column and the row: Arrow's own message quotes a value, and the failure
    reason must not carry data."""
    columns = {}
    for name in dict.fromkeys(name for row in rows for name in row):
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
            first, bad = _first_break(values)
            was = f", unlike at {places[first]} ({_kind(values[first])})" if first < bad else ""
            raise DataError(
                f"{path}: the rows do not share one schema: column {name!r} at {places[bad]} is of type "
                f"{_kind(values[bad])}{was}; give the column one type in every row (a list's items too; numbers "
                "within 64 bits)."
            ) from e
    return pa.table(columns)


def _first_break(values: list[Any]) -> tuple[int, int]:
    """(the first non-null row, the first row with which the values no longer share one Arrow type)."""
    low, high = 1, len(values)  # the shortest prefix that fails to convert, by bisection
    while low < high:
        middle = (low + high) // 2
        try:
            pa.array(values[:middle])
            low = middle + 1
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            high = middle
    return next((i for i, v in enumerate(values[: high - 1]) if v is not None), high - 1), high - 1


def _kind(value: Any) -> str:
    """A JSON value's type in words, never the value."""
    words = ((bool, "boolean"), (int | float, "number"), (str, "string"), (list, "list"))
    return next((word for kind, word in words if isinstance(value, kind)), "object")


SQUAD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("context", pa.string()),
        ("question", pa.string()),
        ("answers", pa.struct([("text", pa.list_(pa.string())), ("answer_start", pa.list_(pa.int32()))])),
    ]
)


def squad_rows(articles: list[dict], path: Path) -> pa.Table:
    """The original nested SQuAD layout (v1.1 and v2.0) as flat rows: one per question.

    v2.0's unanswerable questions (is_impossible) get empty answer lists; the explicit schema gives those lists a
    type even when every answer in a file is empty.
    """
    rows = []
    try:
        for article in articles:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                    rows.append(
                        {
                            "id": str(qa["id"]),
                            "title": article.get("title", ""),
                            "context": paragraph["context"],
                            "question": qa["question"],
                            "answers": {
                                "text": [a["text"] for a in answers],
                                "answer_start": [int(a["answer_start"]) for a in answers],
                            },
                        }
                    )
    except (KeyError, TypeError, ValueError) as e:
        # The key that is missing, never a value: int('...') would quote the data.
        what = (
            f"missing or bad {e}"
            if isinstance(e, KeyError)
            else "an entry is not an object or an answer_start not an integer"
        )
        raise DataError(
            f"{path}: looks like nested SQuAD JSON (data/paragraphs/qas) but an entry is malformed: {what}; each qa "
            "needs id, question and answers [{text, answer_start}]."
        ) from e
    return pa.Table.from_pylist(rows, schema=SQUAD_SCHEMA)


def _parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        _no_repeats(path, pq.read_schema(path).names, ": the schema")  # Arrow tables may repeat a field name
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path} is not a readable parquet file: {e}") from e


def read_file(path: Path) -> pa.Table:
    kind = file_format(path)
    try:
        if kind in ("csv", "tsv"):
            return _csv(path, "\t" if kind == "tsv" else ",")
        if kind in ("json", "jsonl"):
            return _json(path, as_lines=kind == "jsonl")
        if kind == "parquet":
            return _parquet(path)
    except UnicodeDecodeError as e:
        # The position, not the bytes: those are data.
        raise DataError(f"{path} is not UTF-8 text (invalid byte at offset {e.start}); save it as UTF-8.") from e
    except (gzip.BadGzipFile, EOFError) as e:
        raise DataError(f"{path} is not a complete gzip file; compress it again or upload it uncompressed.") from e
    raise DataError(
        f"{path}: unsupported file type; use one of {', '.join(FORMATS)} (csv/tsv/json/jsonl may be gzipped) "
        "or a save_to_disk folder."
    )
