"""Where training resumes from: the newest complete checkpoint in the checkpoint dir."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
STATE_FILE = "trainer_state.json"


def latest_complete(checkpoint_dir: Path) -> Path | None:
    """The highest-step checkpoint-N that has its trainer state; a half-written one lacks it and is skipped."""
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for path in checkpoint_dir.iterdir():
        match = CHECKPOINT_RE.fullmatch(path.name)
        if match and path.is_dir():
            if (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
            else:
                logger.warning("skipping incomplete checkpoint %s (no %s)", path, STATE_FILE)
    return max(found)[1] if found else None


def resolve_resume(resume: str, checkpoint_dir: Path) -> str | None:
    """`auto` -> newest complete checkpoint or None; `never` -> None; anything else must be a checkpoint path."""
    if resume == "never":
        return None
    if resume == "auto":
        latest = latest_complete(checkpoint_dir)
        if latest is not None:
            logger.info("resuming from %s", latest)
        return str(latest) if latest else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(
            f"resume={resume!r} is not a checkpoint (no {STATE_FILE} there); use auto, never or a checkpoint-N path."
        )
    logger.info("resuming from %s", path)
    return str(path)
