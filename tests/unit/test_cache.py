"""cache.py: tokenized datasets cached in the checkpoint dir under a content key, for restarted attempts."""

from pathlib import Path


def test_tokenized_cache_counts_only_once_marked_complete(tmp_path: Path) -> None:
    from datasets import Dataset

    from sm_train import cache

    train = Dataset.from_dict({"input_ids": [[1, 2], [3]]})
    cache.save(tmp_path, "k1", {"train": train})
    assert cache.load(tmp_path, "k1")["train"]["input_ids"] == [[1, 2], [3]]
    arrow = next((tmp_path / cache.CACHE_DIR / "k1").rglob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-8])  # restored from S3 only in part
    assert cache.load(tmp_path, "k1") is None
    (tmp_path / cache.CACHE_DIR / "k1" / cache.DONE).unlink()  # a write cut before its mark
    assert cache.load(tmp_path, "k1") is None
    cache.save(tmp_path, "k2", {"train": train})  # an unfinished cache is dropped, finished ones are kept
    assert [p.name for p in (tmp_path / cache.CACHE_DIR).iterdir()] == ["k2"]


def test_caches_are_kept_per_key_and_the_least_recently_used_pruned(tmp_path: Path) -> None:
    """Jobs with other settings on one checkpoint dir never delete each other's fresh caches."""
    import os

    from datasets import Dataset

    from sm_train import cache

    train = Dataset.from_dict({"input_ids": [[1, 2], [3]]})
    for age, key in enumerate(("k3", "k2", "k1")):
        cache.save(tmp_path, key, {"train": train})
        stamp = 1_000_000 - age * 1000
        os.utime(tmp_path / cache.CACHE_DIR / key / cache.DONE, (stamp, stamp))
    assert cache.load(tmp_path, "k1") is not None  # used now: the most recent
    cache.save(tmp_path, "k4", {"train": train})
    kept = sorted(p.name for p in (tmp_path / cache.CACHE_DIR).iterdir())
    assert kept == ["k1", "k3", "k4"]  # k2 was the least recently used beyond the newest three
