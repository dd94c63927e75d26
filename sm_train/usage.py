"""The commands' help: `python -m sm_train --help` lists them, `python -m sm_train COMMAND --help` shows one.

Plain text and no imports: help answers where only Python is installed, and never starts a job or writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence

HELP_FLAGS = ("--help", "-h")
REFERENCE = "Every hyperparameter, its default and what it does: python -m sm_train hyperparameters [--task TASK]."

SUMMARIES = {  # each command's line in the list
    "train": "run the job in a SageMaker job tree (/opt/ml or SAGEMAKER_BASE_DIR); the default there",
    "local": "run a job on local folders, in an /opt/ml-shaped tree, as SageMaker would",
    "check": "find every problem of a job's input at once, without training",
    "hyperparameters": "print the hyperparameter reference (Markdown)",
    "metric-definitions": "print a task's metric_definitions for the estimator (JSON)",
}


def overview() -> str:
    """The list of commands, one line each."""
    return "\n".join(
        [
            "usage: python -m sm_train [COMMAND] [ARGS ...]",
            "",
            "The training script of a SageMaker + Hugging Face job. Commands:",
            *(f"  {name:<19} {summary}" for name, summary in SUMMARIES.items()),
            "",
            "python -m sm_train COMMAND --help shows a command's options and an example.",
            REFERENCE,
        ]
    )


_TREE_OPTIONS = """\
  --channel NAME=PATH   a folder (or one file) as the channel NAME: train, validation, test, model, ...
                        (linked into input/data/NAME, never copied); repeat for each channel; NAME=null
                        removes a channel from an existing tree
  --root DIR            the job tree (a new or empty folder, or a tree sm_train made); without it a new tree
                        under ~/.cache/sm_train/runs/ (XDG_CACHE_HOME), outside your clone
  --checkpoints DIR     the checkpoint dir, kept across runs (default: the tree's checkpoints/)
  -- --name value ...   the job's hyperparameters, after --, as on the train command line; on an existing
                        tree each replaces only its own key, and --name null removes it (its default applies)"""

USAGE = {
    "train": f"""\
usage: python -m sm_train train [--name value ...]

Run the training job in a SageMaker job tree: /opt/ml, or the folder SAGEMAKER_BASE_DIR names. The hyperparameters
come from input/config/hyperparameters.json as SageMaker writes it (the command line is then ignored) or, without
that file, from the command line. This is what the container image and scripts/train.py run.

options:
  --name value, --name=value   a hyperparameter (a value starting with '-' is safest as --name=value)
  -h, --help                   this text (only as the first argument)

example (a tree of your own, the hyperparameters on the command line):
  SAGEMAKER_BASE_DIR=/tmp/ml python -m sm_train train --model_name_or_path ./my-model \\
      --train_file data/train.csv --validation_file data/val.csv --epochs 1

Outside a job tree use local (it builds one from your folders) or check.
{REFERENCE}""",
    "local": f"""\
usage: python -m sm_train local --channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ...

Build an /opt/ml-shaped tree from plain folders and run the job on it in a child process, as SageMaker would; at the
end, where the model, outputs and checkpoints are. Rerun with the same --root to resume from its checkpoints:
python -m sm_train local --root DIR runs the tree as it is, and what you give replaces only that part.

options:
{_TREE_OPTIONS}
  -h, --help            this text (before --)

example:
  python -m sm_train local --channel train=data/train --channel validation=data/val.jsonl \\
      -- --model_name_or_path distilbert-base-uncased --epochs 1

{REFERENCE}""",
    "check": f"""\
usage: python -m sm_train check [--channel NAME=PATH ...] [--root DIR ...] [--checkpoints DIR] [-- --name value ...]

The job's own steps on its input, without training: hyperparameters, data, tokenizer, the task's checks, the model,
token lengths and one forward and backward pass, every problem reported at once; no model or checkpoint is written.
Exit code 0: the job would start training; 1: problems found; 2: a usage error. Inside a job tree
(SAGEMAKER_BASE_DIR, or /opt/ml in a container) run it with no arguments; --root A --root B ... checks several
existing trees.

options (as for local):
{_TREE_OPTIONS}
  --verbose             also print the resolved configuration (secrets shown as ***)
  -h, --help            this text (before --)

example:
  python -m sm_train check --channel train=data/train \\
      -- --model_name_or_path distilbert-base-uncased --text_column review --label_column sentiment

{REFERENCE}""",
    "hyperparameters": """\
usage: python -m sm_train hyperparameters [--task TASK]

Print the hyperparameter reference as Markdown tables: those of every job, then each task's (or only TASK's), the
changes a restarted job may make and still resume, and the names translated across transformers versions. Needs
only Python (no torch or transformers).

options:
  --task TASK   only this task's table: text-classification, question-answering, summarization, or
                a task of your own as module:Class
  -h, --help    this text

example:
  python -m sm_train hyperparameters --task summarization""",
    "metric-definitions": """\
usage: python -m sm_train metric-definitions [--task TASK]

Print the metric_definitions an estimator needs to chart TASK's metrics (JSON: Name and Regex of each metric line a
job prints). Needs only Python (no torch or transformers).

options:
  --task TASK   text-classification (the default), question-answering, summarization, or module:Class
  -h, --help    this text

example:
  python -m sm_train metric-definitions --task question-answering > metric_definitions.json""",
}


def not_a_job(config_dir: str) -> str:
    """The one line `train` prints outside a job tree."""
    return (
        f"sm_train train: not inside a SageMaker job ({config_dir} does not exist and SAGEMAKER_BASE_DIR is not set); "
        "nothing was run or written. On your own folders run: python -m sm_train local --channel train=DIR -- "
        "--model_name_or_path MODEL ... (python -m sm_train check takes the same arguments and finds a job's problems "
        "without training); python -m sm_train --help lists the commands."
    )


def asks_help(command: str, args: Sequence[str]) -> bool:
    """Whether COMMAND's arguments ask for its usage. train reads -h only as its first argument, since a
    hyperparameter's value may be "-h" (--hub_model_id -h); local and check read it before `--` only, since what
    follows is the job's hyperparameters."""
    if command == "train":
        return bool(args) and args[0] in HELP_FLAGS
    own = args[: list(args).index("--")] if "--" in args else args
    return any(arg in HELP_FLAGS for arg in own)
