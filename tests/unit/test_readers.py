"""readers.py: one data file (csv, tsv, json, jsonl, parquet, gzipped) becomes rows, or fails naming file and line."""

import gzip
import json
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


SECRET = "s3cr3t-row-content"  # data that must never reach a failure reason


def write_text_file(path: Path, header: str, sep: str) -> Path:
    import gzip

    content = f"{header}\n{sep.join([SECRET, 'good words', '1'])}\n".encode()
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


@pytest.mark.parametrize(
    ("name", "header", "repeated"),
    [
        ("d.csv", "text,text,label", "text"),
        ("d.tsv", "text\tlabel\tlabel", "label"),
        ("d.csv.gz", "label,text,text", "text"),
        ("blank_first.csv", "\ntext,text,label", "text"),
    ],
)
def test_a_repeated_csv_header_name_fails_instead_of_reading_the_first(
    tmp_path: Path, name: str, header: str, repeated: str
) -> None:
    """pandas renames the second 'text' to 'text.1', and the job trained on the first (junk) column."""
    sep = "\t" if ".tsv" in name else ","
    with pytest.raises(
        DataError, match=rf"{name}: the header row names the columns \['{repeated}'\] more than once"
    ) as caught:
        load_path(write_text_file(tmp_path / name, header, sep))
    assert SECRET not in str(caught.value)
    renamed = write_text_file(tmp_path / f"ok_{name}", header.replace(repeated, "other", 1), sep)
    assert len(load_path(renamed).column_names) == 3


def test_empty_csv_header_cells_are_not_repeats(tmp_path: Path) -> None:
    """A pandas index column has an empty name; pandas numbers the empty ones, nothing is silently replaced."""
    (tmp_path / "i.csv").write_text(",,text,label\n0,0,a,1\n")
    assert load_path(tmp_path / "i.csv").column_names == ["Unnamed: 0", "Unnamed: 1", "text", "label"]


@pytest.mark.parametrize(
    ("name", "content", "where", "repeated"),
    [
        (
            "d.jsonl",
            f'{{"text": "a", "label": 1}}\n\n{{"text": "{SECRET}", "text": "b", "label": 1}}\n',
            " line 3",
            "text",
        ),
        ("d.json", f'[{{"text": "a", "label": 1}}, {{"text": "{SECRET}", "label": 1, "label": 2}}]', "", "label"),
        (
            "lines.json",
            f'{{"text": "a", "label": 1}}\n{{"text": "{SECRET}", "label": 2, "label": 3}}\n',
            " line 2",
            "label",
        ),
        ("nested.json", f'{{"data": [{{"text": "{SECRET}", "label": {{"x": 1, "x": 2}}}}]}}', "", "x"),
    ],
)
def test_a_repeated_json_key_fails_instead_of_keeping_the_last(
    tmp_path: Path, name: str, content: str, where: str, repeated: str
) -> None:
    """json.loads keeps the last value of a repeated key, silently."""
    (tmp_path / name).write_text(content)
    with pytest.raises(
        DataError, match=rf"{name}{where}: an object names the keys \['{repeated}'\] more than once"
    ) as caught:
        load_path(tmp_path / name)
    assert SECRET not in str(caught.value)
    (tmp_path / "same_key_nested.jsonl").write_text('{"text": "a", "label": {"text": 1}}\n')
    assert load_path(tmp_path / "same_key_nested.jsonl")[0] == {"text": "a", "label": {"text": 1}}


def test_a_parquet_file_with_a_repeated_field_name(tmp_path: Path) -> None:
    """Arrow tables may repeat a field name; pyarrow then failed with a message about FieldRef matches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [pa.array([SECRET]), pa.array(["good words"]), pa.array([1])]
    pq.write_table(pa.table(columns, names=["text", "text", "label"]), tmp_path / "d.parquet")
    with pytest.raises(
        DataError, match=r"d.parquet: the schema names the columns \['text'\] more than once"
    ) as caught:
        load_path(tmp_path / "d.parquet")
    assert SECRET not in str(caught.value)
    pq.write_table(pa.table(columns, names=["junk", "text", "label"]), tmp_path / "ok.parquet")
    assert load_path(tmp_path / "ok.parquet")[0]["text"] == "good words"


# Failure reasons name the column and the line, never the data.


def test_mixed_schema_jsonl_names_column_and_line_not_data(tmp_path) -> None:
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 2}, {"text": [SECRET], "label": "b"}]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(DataError) as caught:
        load_path(path)
    message = str(caught.value)
    assert "column 'text' at line 4 is of type list, unlike at line 1 (string)" in message
    assert SECRET not in message and "'b'" not in message


def test_mixed_schema_json_array_names_the_record(tmp_path) -> None:
    (tmp_path / "m.json").write_text(json.dumps([{"n": None}, {"n": 1}, {"n": 2}, {"n": SECRET}]))
    with pytest.raises(DataError, match=r"column 'n' at record 4 is of type string, unlike at record 2 \(number\)"):
        load_path(tmp_path / "m.json")


def test_keys_missing_from_the_first_row_are_kept(tmp_path) -> None:
    (tmp_path / "k.jsonl").write_text('{"text": "a"}\n{"text": "b", "label": 1}\n')
    assert load_path(tmp_path / "k.jsonl").to_list() == [{"text": "a", "label": None}, {"text": "b", "label": 1}]


def test_csv_column_of_numbers_and_words(tmp_path) -> None:
    """pandas types a long csv chunk by chunk: a column of numbers that turns to words mixed int and str, and Arrow
    refused it quoting a value."""
    lines = "".join(f"{i},a\n" for i in range(300_000))
    (tmp_path / "big.csv").write_text(f"text,label\n{lines}{SECRET},b\n")
    dataset = load_path(tmp_path / "big.csv")
    assert dataset.features["text"].dtype in ("string", "large_string") and dataset[-1]["text"] == SECRET


def test_other_failure_reasons_carry_no_data(tmp_path) -> None:
    answers = [{"text": "c", "answer_start": SECRET}]
    nested = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", "answers": answers}]}]}]}
    (tmp_path / "squad.json").write_text(json.dumps(nested))
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text,label\n" + SECRET.encode() + b",1\n")[:-8])
    for name, pattern in (
        ("squad.json", r"malformed: an entry is not an object or an answer_start not an integer"),
        ("latin.csv", r"not UTF-8 text \(invalid byte at offset 14\)"),
        ("cut.csv.gz", r"not a complete gzip file"),
    ):
        with pytest.raises(DataError, match=pattern) as caught:
            load_path(tmp_path / name)
        assert SECRET not in str(caught.value) and "0xe9" not in str(caught.value)
