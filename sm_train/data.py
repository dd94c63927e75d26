"""Channels, files or a Hub dataset -> DatasetDict with a 'train', an 'eval' and/or a 'test' split. No tokenization
here.

The test data (the `test` channel, test_file, a dataset's `test` split) is a test set, predicted on after training
(do_predict), when the job also has validation data or do_predict=true; otherwise it is the evaluation split.

Formats inside a channel dir: csv, tsv, json (records or an array), jsonl, parquet, and save_to_disk dirs (a
Dataset or a DatasetDict). A file that does not parse is reported with its name and line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from datasets import Dataset, DatasetDict, load_from_disk
from datasets.fingerprint import generate_random_fingerprint

from sm_train.errors import ConfigError, DataError
from sm_train.readers import FORMATS, file_format, read_file

if TYPE_CHECKING:
    from sm_train.config import Config, JobArgs
    from sm_train.env import SageMakerEnv

logger = logging.getLogger(__name__)

# Where each split's data is looked for: a channel of that name, then the splits of a DatasetDict given for it.
VALIDATION_SPLITS = ("validation", "test")
TEST_SPLITS = ("test", "validation")


def _data_files(directory: Path) -> list[Path]:
    files = [
        p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    ]
    data = [p for p in files if file_format(p)]
    if not data:
        found = ", ".join(p.name for p in files[:10]) or "nothing"
        raise DataError(
            f"No data files in {directory} (found: {found}). "
            f"Put {', '.join(FORMATS)} files or a save_to_disk folder in the channel."
        )
    kinds = {file_format(p) for p in data}
    if len(kinds) > 1:
        raise DataError(f"{directory} mixes file types ({', '.join(sorted(kinds))}); keep one format per channel.")
    return data


def load_path(path: Path) -> Dataset | DatasetDict:
    """A file, a folder of files of one format, or a save_to_disk folder."""
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        return load_from_disk(str(path))
    files = _data_files(path) if path.is_dir() else [path]
    tables = [read_file(f) for f in files]
    try:
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise DataError(f"The files in {path} do not share one set of columns and types: {e}") from e
    # A fingerprint given: without one, datasets hashes an in-memory table by pickling all of it, a transient copy of
    # ~3.5 times the data (+97 MB for 500,000 short rows). Nothing caches by it: in-memory datasets have no cache
    # files, and the tokenized cache is keyed by cache.data_fingerprints.
    return Dataset(table, fingerprint=generate_random_fingerprint())


def _pick(data: Dataset | DatasetDict, names: tuple[str, ...], where: str) -> Dataset:
    if isinstance(data, Dataset):
        return data
    for name in names:
        if name in data:
            return data[name]
    raise DataError(f"{where} holds splits {list(data)}; expected one of {list(names)}.")


def _hub(job: JobArgs) -> DatasetDict:
    from datasets import load_dataset

    local = Path(job.dataset_name)
    where = f"the {'folder' if local.is_dir() else 'file'} {local}" if local.exists() else "the Hugging Face Hub"
    try:
        return load_dataset(job.dataset_name, job.dataset_config_name)
    except Exception as e:  # datasets raises many types here: the reason is what matters
        raise DataError(f"Could not load dataset_name={job.dataset_name!r} from {where}: {e}") from e


def _evaluation_sources(
    job: JobArgs, env: SageMakerEnv, holder: Dataset | DatasetDict | None, train_source: str | None
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The validation and test data, each from its file, else its channel, else the split of that name in a
    DatasetDict (save_to_disk or the Hub) that holds the training data."""
    raw: dict[str, Dataset] = {}
    sources: dict[str, str] = {}
    for split, file, channel, names in (
        ("eval", job.validation_file, "validation", VALIDATION_SPLITS),
        ("test", job.test_file, "test", TEST_SPLITS),
    ):
        if file:
            raw[split], sources[split] = _pick(load_path(Path(file)), names, file), file
        elif channel in env.channels:
            where = f"the {channel} channel"
            raw[split], sources[split] = _pick(load_path(env.channels[channel]), names, where), where
        elif isinstance(holder, DatasetDict) and names[0] in holder:
            raw[split], sources[split] = holder[names[0]], f"the {names[0]} split of {train_source}"
    return raw, sources


def _test_role(raw: dict[str, Dataset], sources: dict[str, str], do_predict: bool | None) -> None:
    """A test set when there is validation data or do_predict=true; without validation data and unless
    do_predict=true, the evaluation split (as before test sets existed). do_predict: None when not set."""
    if "test" not in raw:
        if do_predict:
            raise DataError(
                "do_predict=true but there is no test data: add a 'test' channel (estimator.fit({'test': "
                "'s3://...'})) or set test_file."
            )
        return
    if "eval" not in raw and not do_predict:
        logger.info(
            "%s is the evaluation split: there is no validation data (a 'validation' channel or validation_file). "
            "Set do_predict=true to predict on it as a test set instead.",
            sources["test"],
        )
        raw["eval"], sources["eval"] = raw.pop("test"), sources.pop("test")
    elif do_predict is False:
        logger.info("do_predict=false: %s is not used", sources["test"])
        del raw["test"]
    else:
        logger.info(
            "%s is a test set: the job predicts every row after training (do_predict; do_predict=false skips it)",
            sources["test"],
        )


def load_raw(job: JobArgs, env: SageMakerEnv, do_predict: bool | None = None) -> DatasetDict:
    """The job's 'train', 'eval' and 'test' splits: explicit files > channels > dataset_name. do_predict: the
    hyperparameter when set (None: not set), which decides what the test data is (_test_role)."""
    raw: dict[str, Dataset] = {}
    sources: dict[str, str] = {}
    train_source: Dataset | DatasetDict | None = None
    if job.train_file:
        train_source, sources["train"] = load_path(Path(job.train_file)), job.train_file
    elif "train" in env.channels:
        train_source, sources["train"] = load_path(env.channels["train"]), "the train channel"
    hub = _hub(job) if job.dataset_name else None
    if train_source is None and hub is not None:
        train_source, sources["train"] = hub, f"dataset {job.dataset_name}"
    if train_source is not None:
        raw["train"] = _pick(train_source, ("train",), sources["train"])
    holder = hub if hub is not None else train_source
    found, where = _evaluation_sources(job, env, holder, sources.get("train"))
    raw |= found
    sources |= where
    _test_role(raw, sources, do_predict)

    limits = {"train": job.max_train_samples, "eval": job.max_eval_samples, "test": None}
    for split, dataset in list(raw.items()):
        if len(dataset) == 0:
            raise DataError(f"The {split} data from {sources[split]} has no rows.")
        if limits[split] is not None and limits[split] < len(dataset):
            raw[split] = dataset.select(range(limits[split]))
        logger.info(
            "%s data: %d rows from %s, columns %s", split, len(raw[split]), sources[split], raw[split].column_names
        )
    return DatasetDict(raw)


def missing_train_message(env: SageMakerEnv) -> str:
    present = ", ".join(sorted(env.channels)) or "none"
    return (
        "No training data: give the job a 'train' channel (estimator.fit({'train': 's3://...'})) or set the "
        f"train_file or dataset_name hyperparameter. Channels present: {present}."
    )


def select_splits(cfg: Config, env: SageMakerEnv) -> DatasetDict:
    """The raw splits a job uses: training, evaluation and prediction on a test set each happen when their data
    exists, unless set false (the test data's role: _test_role)."""
    args, explicit = cfg.training_args, cfg.explicit
    do_train = args.do_train or "do_train" not in explicit
    do_eval = args.do_eval or "do_eval" not in explicit
    raw = load_raw(cfg.job, env, args.do_predict if "do_predict" in explicit else None)
    if do_train and "train" not in raw:
        raise DataError(missing_train_message(env))
    if "do_eval" in explicit and args.do_eval and "eval" not in raw:
        raise DataError(
            "do_eval=true but there is no evaluation data: add a 'validation' or 'test' channel, or set "
            "validation_file."
        )
    for split, wanted in (("train", do_train), ("eval", do_eval)):
        if not wanted and split in raw:
            del raw[split]
    if "train" in raw and "eval" not in raw and args.eval_strategy != "no":
        patience = cfg.job.early_stopping_patience
        setting = f"early_stopping_patience={patience}" if patience else f"eval_strategy={args.eval_strategy.value}"
        if not patience and "eval_strategy" not in cfg.explicit and env.tuning_objective:
            setting = f"The tuning objective {env.tuning_objective} (evaluated every epoch)"
        raise DataError(
            f"{setting} needs evaluation data: add a 'validation' or 'test' channel, or set validation_file."
        )
    if not raw:
        raise ConfigError("do_train=false and no evaluation or test data: the job has nothing to do.")
    return raw
