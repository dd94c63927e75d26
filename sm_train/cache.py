"""Tokenized datasets cached in the checkpoint dir, so a restarted spot attempt loads them instead of tokenizing
again (SageMaker syncs the cache to S3 with the checkpoints).

The key is a fingerprint of the data itself (its Arrow content, whatever file or channel it came from), the
tokenizer's content, the model, the task and every preprocessing hyperparameter: change any of them and the old
cache is not reused (it is deleted once the new one is complete).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_from_disk

from sm_train.checkpoint import file_sizes, size_problem, write_atomically

logger = logging.getLogger(__name__)

CACHE_DIR = "tokenized"
DONE = "complete.json"


def data_fingerprint(raw: DatasetDict) -> str:
    """A hash of the rows' content (Arrow record batches, so a selection hashes as what it selects)."""
    digest = hashlib.blake2b(digest_size=16)
    for split in sorted(raw):
        digest.update(split.encode())
        table = raw[split].with_format("arrow")[:]
        for batch in table.to_batches(max_chunksize=65536):
            digest.update(batch.serialize())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    settings = {"max": tokenizer.model_max_length, "padding_side": tokenizer.padding_side}
    return hashlib.blake2b((content + json.dumps(settings)).encode(), digest_size=16).hexdigest()


def cache_key(raw: DatasetDict, tokenizer: Any, settings: dict[str, Any]) -> str:
    """settings: everything else preprocessing depends on (task, its arguments, model, sm_train version, ...)."""
    parts = {"data": data_fingerprint(raw), "tokenizer": tokenizer_fingerprint(tokenizer), **settings}
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
    logger.info("loaded the tokenized data (%s) from the cache %s: no tokenization", ", ".join(splits), path)
    return cached


def save(root: Path, key: str, datasets: dict[str, Dataset]) -> None:
    """Write in place and mark complete last (no folder rename: SageMaker's checkpoint sync uploads files as they are
    written), then delete caches with other keys."""
    final = root / CACHE_DIR / key
    shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's cut-off write
    for split, dataset in datasets.items():
        dataset.save_to_disk(str(final / split))
    write_atomically(final / DONE, {"splits": sorted(datasets), "files": file_sizes(final)})
    for stale in (root / CACHE_DIR).iterdir():
        if stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
            logger.info("deleted the stale tokenized cache %s", stale)
    logger.info("tokenized data cached in %s for restarts", final)
