"""readers.py: one data file (csv, tsv, json, jsonl, parquet, gzipped) becomes rows, or fails naming file and line."""

from pathlib import Path

import pytest

from sm_train.data import load_path
from sm_train.errors import DataError
from tests.jobs import write_rows

ROWS = [{"text": f"row {i}", "label": "pos" if i % 2 else "neg"} for i in range(6)]


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.json", "d.jsonl", "d.parquet"])
def test_each_format(tmp_path: Path, name: str) -> None:
    dataset = load_path(write_rows(tmp_path / name, ROWS))
    assert dataset.column_names == ["text", "label"] and dataset[3] == ROWS[3]


def test_json_lines_with_a_json_name_and_records_under_data(tmp_path: Path) -> None:
    jsonl = write_rows(tmp_path / "a.jsonl", ROWS)
    renamed = jsonl.rename(tmp_path / "b.json")
    assert len(load_path(renamed)) == 6
    (tmp_path / "c.json").write_text('{"data": [{"text": "x", "label": 1}]}')
    assert load_path(tmp_path / "c.json")[0] == {"text": "x", "label": 1}


def test_gzipped_files_and_byte_order_marks(tmp_path: Path) -> None:
    import gzip

    jsonl = write_rows(tmp_path / "d.jsonl", ROWS)
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(jsonl.read_bytes()))
    assert load_path(tmp_path / "d.jsonl.gz")[5] == ROWS[5]
    csv = write_rows(tmp_path / "e.csv", ROWS)
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    (tmp_path / "e.csv.gz").write_bytes(gzip.compress(csv.read_bytes()))
    assert load_path(tmp_path / "bom.csv").column_names == ["text", "label"]
    assert len(load_path(tmp_path / "e.csv.gz")) == 6


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n', r"bad.jsonl line 2 is not valid JSON"),
        ("bad.json", '[{"text": "a",\n "label": }]', r"bad.json line 2 column \d+ is not valid JSON"),
        ("bad.csv", "text,label\na,1\nb,2,3\n", r"bad.csv does not parse as CSV: .*line 3"),
        ("empty.csv", "", r"empty.csv is empty"),
        ("scalar.json", "42", r"scalar.json: expected JSON records"),
        ("mixed.jsonl", '{"label": 1}\n{"label": [1, 2]}\n', r"mixed.jsonl: the rows do not share one schema"),
        ("bad.parquet", "not parquet", r"bad.parquet is not a readable parquet file"),
        ("notes.txt", "hello", r"notes.txt: unsupported file type"),
    ],
)
def test_malformed_files_are_named_with_the_line(tmp_path: Path, name: str, content: str, pattern: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_path(tmp_path / name)


def test_latin1_file(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_path(tmp_path / "l.csv")
