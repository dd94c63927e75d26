from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from sm_train.config import JobArgs
from sm_train.data import load_path, load_raw
from sm_train.env import from_environ
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


def test_a_folder_of_shards(tmp_path: Path) -> None:
    write_rows(tmp_path / "ch" / "part-0.csv", ROWS[:3])
    write_rows(tmp_path / "ch" / "sub" / "part-1.csv", ROWS[3:])
    (tmp_path / "ch" / ".manifest").write_text("ignored")
    assert load_path(tmp_path / "ch")["text"] == [r["text"] for r in ROWS]


def test_save_to_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    dataset = Dataset.from_list([{"text": "a", "label": 1}], features=features)
    dataset.save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": dataset, "test": dataset}).save_to_disk(str(tmp_path / "dict"))
    assert load_path(tmp_path / "one").features["label"].names == ["neg", "pos"]
    assert set(load_path(tmp_path / "dict")) == {"train", "test"}


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


def test_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"No data files in .*empty \(found: readme.md\)"):
        load_path(tmp_path / "empty")
    write_rows(tmp_path / "mixed" / "a.csv", ROWS)
    write_rows(tmp_path / "mixed" / "b.jsonl", ROWS)
    with pytest.raises(DataError, match="mixes file types"):
        load_path(tmp_path / "mixed")
    with pytest.raises(DataError, match="does not exist"):
        load_path(tmp_path / "nope")


def sm_env(tmp_path: Path, channels: dict[str, list]) -> object:
    for name, rows in channels.items():
        write_rows(tmp_path / "input" / "data" / name / "data.csv", rows)
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


@pytest.mark.parametrize("eval_channel", ["validation", "test"])
def test_channels_give_train_and_eval(tmp_path: Path, eval_channel: str) -> None:
    raw = load_raw(JobArgs(), sm_env(tmp_path, {"train": ROWS, eval_channel: ROWS[:2]}))
    assert len(raw["train"]) == 6 and len(raw["eval"]) == 2


def test_files_override_channels_and_limits_apply(tmp_path: Path) -> None:
    env = sm_env(tmp_path, {"train": ROWS})
    other = write_rows(tmp_path / "other.jsonl", ROWS * 2)
    job = JobArgs(train_file=str(other), validation_file=str(other), max_train_samples=5, max_eval_samples=3)
    raw = load_raw(job, env)
    assert len(raw["train"]) == 5 and len(raw["eval"]) == 3


def test_eval_split_inside_a_saved_dataset_dict(tmp_path: Path) -> None:
    dataset = Dataset.from_list(ROWS)
    DatasetDict({"train": dataset, "validation": dataset.select([0])}).save_to_disk(str(tmp_path / "saved"))
    raw = load_raw(JobArgs(train_file=str(tmp_path / "saved")), from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}))
    assert len(raw["train"]) == 6 and len(raw["eval"]) == 1


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    (tmp_path / "input" / "data" / "train" / "t.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="The train data from the train channel has no rows"):
        load_raw(JobArgs(), from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)}))
