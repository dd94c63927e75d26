"""Folders whose completeness is checked by their files' sizes (checkpoints, the tokenized cache: S3 restores files in
any order, and a cut-off write leaves some short or missing) or by their archives being readable, and JSON written
atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path


def file_sizes(root: Path) -> dict[str, int]:
    """Every file below root and its size (what a complete copy must have; S3 restores files in any order)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def size_problem(root: Path, sizes: dict[str, int]) -> str | None:
    for name, size in sizes.items():
        if not (root / name).is_file() or (root / name).stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def archive_problem(root: Path, names: list[str]) -> str | None:
    """The first of these torch archives (zip files) that is missing or unreadable."""
    for name in names:
        if not zipfile.is_zipfile(root / name):
            return f"{name} is missing or unreadable"
    return None


def write_atomically(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content))
    os.replace(tmp, path)
