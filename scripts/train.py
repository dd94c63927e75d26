"""SageMaker entry point (script mode): source_dir = the repository root, entry_point = 'scripts/train.py'."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, wherever the toolkit put it

from sm_train.cli import main  # noqa: E402

sys.exit(main())
