"""Tokenized datasets cached in the checkpoint dir, so a restarted spot attempt loads them instead of tokenizing
again (SageMaker syncs the cache to S3 with the checkpoints).

The key is a fingerprint of the data itself (its Arrow content, whatever file or channel it came from), the
tokenizer's content, the model, the task and every preprocessing hyperparameter: change any of them and the old
cache is not reused. Caches are kept one per key; beyond the KEEP most recently used, older ones are deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_from_disk

from sm_train.files import file_sizes, size_problem, write_atomically

logger = logging.getLogger(__name__)

CACHE_DIR = "tokenized"
DONE = "complete.json"
KEEP = 3  # caches kept: one per key, the most recently used (jobs with other settings may share a checkpoint dir)


def data_fingerprints(raw: DatasetDict) -> dict[str, str]:
    """Per split, a hash of the rows' content (Arrow record batches, so a selection hashes as what it selects)."""
    found = {}
    for split in sorted(raw):
        digest = hashlib.blake2b(digest_size=16)
        table = raw[split].with_format("arrow")[:]
        for batch in table.to_batches(max_chunksize=65536):
            digest.update(batch.serialize())
        found[split] = digest.hexdigest()
    return found


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    settings = {"max": tokenizer.model_max_length, "padding_side": tokenizer.padding_side}
    return hashlib.blake2b((content + json.dumps(settings)).encode(), digest_size=16).hexdigest()


def cache_key(data: dict[str, str], tokenizer: str, settings: dict[str, Any]) -> str:
    """data and tokenizer fingerprints; settings: everything else preprocessing depends on (task, its arguments,
    model, sm_train version, ...)."""
    parts = {"data": data, "tokenizer": tokenizer, **settings}
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def load(root: Path, key: str) -> DatasetDict | None:
    path = root / CACHE_DIR / key
    if not (path / DONE).is_file():
        return None
    try:
        done = json.loads((path / DONE).read_text())
        wrong = size_problem(path, done["files"])
        if wrong:
            raise ValueError(wrong)
        cached = DatasetDict({split: load_from_disk(str(path / split)) for split in done["splits"]})
    except (OSError, ValueError, KeyError) as e:  # a cut-off S3 restore: tokenize again
        logger.warning("tokenized cache %s is unreadable (%s); tokenizing again", path, e)
        return None
    splits = done["splits"]
    (path / DONE).touch()  # recently used: kept by _prune
    logger.info("loaded the tokenized data (%s) from the cache %s: no tokenization", ", ".join(splits), path)
    return cached


def save(root: Path, key: str, datasets: dict[str, Dataset]) -> None:
    """Write in place and mark complete last (no folder rename: SageMaker's checkpoint sync uploads files as they are
    written), then prune."""
    final = root / CACHE_DIR / key
    shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's cut-off write
    for split, dataset in datasets.items():
        dataset.save_to_disk(str(final / split))
    write_atomically(final / DONE, {"splits": sorted(datasets), "files": file_sizes(final)})
    logger.info("tokenized data cached in %s for restarts", final)
    _prune(root / CACHE_DIR)


def _prune(directory: Path) -> None:
    """Drop unfinished caches and keep the KEEP most recently used. One job writes a checkpoint dir at a time
    (claim.py), so a cache without its mark is an abandoned write, not one in progress, and no other running job
    reads the caches deleted here."""
    done = sorted(
        (p for p in directory.iterdir() if (p / DONE).is_file()),
        key=lambda p: (p / DONE).stat().st_mtime,
        reverse=True,
    )
    for old in [p for p in directory.iterdir() if p not in done] + done[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
        logger.info("deleted the tokenized cache %s (unfinished, or beyond the %d most recently used)", old, KEEP)
