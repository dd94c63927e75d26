"""The metric_definitions of a sm_train job as JSON, from any directory, with only Python installed (a notebook with
the SageMaker SDK: no torch, transformers or datasets needed):

    python path/to/sm-train/scripts/metric_definitions.py --task question-answering

The same list as `python -m sm_train metric-definitions --task ...` run in the repository root: the regexes that read
back exactly the metric lines the job prints.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, wherever this is run from

from sm_train.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["metric-definitions", *sys.argv[1:]]))
