"""Channels, files or a Hub dataset -> DatasetDict with a 'train' and/or an 'eval' split. No tokenization here.

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

EVAL_CHANNELS = ("validation", "test")
EVAL_SPLITS = ("validation", "test")


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


def load_raw(job: JobArgs, env: SageMakerEnv) -> DatasetDict:
    """The job's 'train' and 'eval' splits: explicit files > channels > dataset_name."""
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

    eval_file = job.validation_file or job.test_file
    eval_channel = next((c for c in EVAL_CHANNELS if c in env.channels), None)
    if eval_file:
        raw["eval"], sources["eval"] = _pick(load_path(Path(eval_file)), EVAL_SPLITS, eval_file), eval_file
    elif eval_channel:
        where = f"the {eval_channel} channel"
        raw["eval"], sources["eval"] = _pick(load_path(env.channels[eval_channel]), EVAL_SPLITS, where), where
    else:
        # A DatasetDict (save_to_disk or the Hub) may carry its own evaluation split.
        holder = hub if hub is not None else train_source
        if isinstance(holder, DatasetDict):
            split = next((s for s in EVAL_SPLITS if s in holder), None)
            if split:
                raw["eval"], sources["eval"] = holder[split], f"the {split} split of {sources['train']}"

    limits = {"train": job.max_train_samples, "eval": job.max_eval_samples}
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
    """The raw splits a job uses: training and evaluation both happen when their data exists, unless set false."""
    args, explicit = cfg.training_args, cfg.explicit
    do_train = args.do_train or "do_train" not in explicit
    do_eval = args.do_eval or "do_eval" not in explicit
    raw = load_raw(cfg.job, env)
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
        raise DataError(
            f"{setting} needs evaluation data: add a 'validation' or 'test' channel, or set validation_file."
        )
    if not raw:
        raise ConfigError("do_train=false and no evaluation: the job has nothing to do.")
    return raw
