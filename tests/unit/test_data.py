"""data.py: folders, save_to_disk datasets and channels become the job's train and eval splits."""

import re
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from sm_train.config import JobArgs
from sm_train.data import load_path, load_raw
from sm_train.env import from_environ
from sm_train.errors import DataError
from tests.jobs import write_rows
from tests.unit.test_readers import ROWS


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


def test_a_local_dataset_name_is_not_called_a_hub_dataset(tmp_path: Path) -> None:
    """dataset_name may be a local folder (load_dataset reads it): its failure names the folder, not the Hub."""
    (tmp_path / "folder").mkdir()
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    folder = tmp_path / "folder"
    with pytest.raises(DataError, match=re.escape(f"dataset_name='{folder}' from the folder {folder}: ")) as caught:
        load_raw(JobArgs(dataset_name=str(folder)), env)
    assert "Hugging Face Hub" not in str(caught.value)
    with pytest.raises(DataError, match=r"dataset_name='nobody/no-such-dataset' from the Hugging Face Hub: "):
        load_raw(JobArgs(dataset_name="nobody/no-such-dataset"), env)


# A test set or the evaluation split: what the test data is.


@pytest.mark.parametrize(
    ("channels", "do_predict", "splits"),
    [
        (("train", "validation", "test"), None, {"train": 6, "eval": 2, "test": 3}),  # a test set beside validation
        (("train", "test"), None, {"train": 6, "eval": 3}),  # no validation: test is the evaluation split
        (("train", "test"), True, {"train": 6, "test": 3}),  # ... unless do_predict=true
        (("train", "test"), False, {"train": 6, "eval": 3}),
        (("train", "validation", "test"), False, {"train": 6, "eval": 2}),  # not predicted: not used
        (("test",), True, {"test": 3}),
    ],
)
def test_what_the_test_data_is(tmp_path: Path, caplog, channels, do_predict, splits) -> None:
    sizes = {"train": ROWS, "validation": ROWS[:2], "test": ROWS[:3]}
    env = sm_env(tmp_path, {name: sizes[name] for name in channels})
    with caplog.at_level("INFO", logger="sm_train.data"):
        raw = load_raw(JobArgs(), env, do_predict)
    assert {split: len(rows) for split, rows in raw.items()} == splits
    said = {
        "test": "the test channel is a test set: the job predicts every row after training (do_predict;",
        "eval": "the test channel is the evaluation split: there is no validation data",
    }
    if do_predict is not False and "test" in channels:
        assert said["test" if "test" in raw else "eval"] in caplog.text


def test_a_test_set_from_files_and_saved_splits(tmp_path: Path) -> None:
    """test_file beside validation_file; a DatasetDict's validation and test splits, each its own role."""
    env = sm_env(tmp_path, {})
    files = {name: write_rows(tmp_path / f"{name}.jsonl", ROWS[:n]) for name, n in (("v", 2), ("t", 4))}
    raw = load_raw(
        JobArgs(train_file=str(files["t"]), validation_file=str(files["v"]), test_file=str(files["t"])), env
    )
    assert (len(raw["eval"]), len(raw["test"])) == (2, 4)
    dataset = Dataset.from_list(ROWS)
    saved = DatasetDict({"train": dataset, "validation": dataset.select([0]), "test": dataset.select([1, 2])})
    saved.save_to_disk(str(tmp_path / "saved"))
    raw = load_raw(JobArgs(train_file=str(tmp_path / "saved")), env)
    assert (len(raw["train"]), len(raw["eval"]), len(raw["test"])) == (6, 1, 2)


def test_do_predict_without_test_data_fails(tmp_path: Path) -> None:
    env = sm_env(tmp_path, {"train": ROWS, "validation": ROWS[:2]})
    with pytest.raises(
        DataError, match=r"do_predict=true but there is no test data: add a 'test' channel .*test_file"
    ):
        load_raw(JobArgs(), env, True)


@pytest.mark.parametrize(
    ("hyperparameters", "channels", "splits"),
    [
        ({"do_train": False, "do_predict": True}, ("test",), {"test"}),  # prediction alone (a model channel)
        ({"do_train": False}, ("validation", "test"), {"eval", "test"}),
        ({"do_eval": False}, ("train", "validation", "test"), {"train", "test"}),
    ],
)
def test_select_splits_with_a_test_set(tmp_path: Path, hyperparameters, channels, splits) -> None:
    from sm_train.config import parse
    from sm_train.data import select_splits
    from sm_train.device import DeviceInfo

    env = sm_env(tmp_path, {name: ROWS for name in channels})
    cfg = parse([("model_name_or_path", "m"), *hyperparameters.items()], env, DeviceInfo())
    assert set(select_splits(cfg, env)) == splits
