"""Entry point: subcommands, logging, the failure file and the exit code.

python -m sm_train [train] [--name value ...]      run a training job (the default)
python -m sm_train metric-definitions --task T    the estimator's metric_definitions as JSON
python -m sm_train hyperparameters [--task T]     the hyperparameter reference as a Markdown table
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from sm_train import env as sm_env
from sm_train.errors import Interrupted, UserError
from sm_train.redact import scrub, secret_values

logger = logging.getLogger("sm_train")

MAX_FAILURE_CHARS = 1024  # SageMaker shows the first 1024 characters as FailureReason


def setup_logging() -> None:
    import datasets
    import transformers

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    transformers.utils.logging.set_verbosity_warning()
    datasets.utils.logging.set_verbosity_warning()
    if not sys.stdout.isatty():
        # tqdm's carriage returns turn CloudWatch logs into noise and break metric scraping.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def failure_reason(error: BaseException) -> str:
    """The first line says what went wrong, where, and how to fix it."""
    if isinstance(error, UserError | Interrupted):
        return str(error)
    name = type(error).__name__
    if isinstance(error, MemoryError) or "OutOfMemoryError" in name:
        return (
            f"Out of memory ({name}: {error}). Lower per_device_train_batch_size / per_device_eval_batch_size or "
            "max_seq_length, raise gradient_accumulation_steps, or use a larger instance."
        )
    if isinstance(error, OSError) and error.errno == 28:
        return f"Disk full ({error}). Raise the job's volume_size or lower save_total_limit."
    if isinstance(error, ImportError):
        return f"Missing or incompatible package: {error}. Check requirements.txt against the container's packages."
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted (SIGINT) before the job finished."
    return f"{name}: {error} (unexpected error inside sm_train; the full traceback is in the job log)"


def write_failure(output_dir: Path, reason: str) -> None:
    """Write the failure file unless one exists: the first error (of any rank) is the one that matters."""
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(output_dir / "failure", "x", encoding="utf-8") as f:
            f.write(reason[:MAX_FAILURE_CHARS])
    except FileExistsError:
        pass


def train(argv: Sequence[str]) -> int:
    setup_logging()
    from sm_train import config, outputs, runner

    environment = sm_env.from_environ()
    guard = outputs.OutputGuard((environment.model_dir, environment.output_data_dir))
    secrets: list[str] = []
    try:
        items = config.source_items(environment, argv)
        secrets = secret_values(items)
        cfg = config.load(environment, argv)
        runner.run(cfg, environment)
    except BaseException as error:  # noqa: B036 - tokenizers' PanicException derives from BaseException
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        reason = scrub(failure_reason(error), secrets)
        logger.error("%s\n%s", reason, scrub(traceback.format_exc(), secrets))
        write_failure(environment.output_dir, reason)
        guard.clean()
        return error.exit_code if isinstance(error, Interrupted) else 1
    return 0


def metric_definitions(argv: Sequence[str]) -> int:
    from sm_train.dialects import argv_items
    from sm_train.metrics import metric_definitions as definitions
    from sm_train.tasks import get_task

    options = dict(argv_items(argv))
    task = get_task(str(options.get("task") or "text-classification"))
    print(json.dumps(definitions(task.metric_names), indent=2))
    return 0


def hyperparameters(argv: Sequence[str]) -> int:
    from sm_train.compat import RULES
    from sm_train.config import JobArgs, hyperparameter_reference
    from sm_train.dialects import argv_items
    from sm_train.tasks import TASKS, get_task

    options = dict(argv_items(argv))
    names = [str(options["task"])] if options.get("task") else list(TASKS)
    tables = [("every task", JobArgs)] + [(f"task={name}", get_task(name).Args) for name in names]
    for title, dataclass_type in tables:
        print(f"#### {title}\n\n| name | default | description |\n|---|---|---|")
        for row in hyperparameter_reference(dataclass_type):
            print("| `{}` | {} | {} |".format(*(cell.replace("|", "\\|") for cell in row)))
        print()
    print("#### Translated names (aliases, and arguments transformers 5 renamed or removed)\n")
    print("| given | becomes | why |\n|---|---|---|")
    for old, rule in RULES.items():
        print(f"| `{old}` | {f'`{rule.new}`' if rule.new else 'dropped'} | {rule.why} |")
    return 0


COMMANDS = {"train": train, "metric-definitions": metric_definitions, "hyperparameters": hyperparameters}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in COMMANDS else "train"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return COMMANDS[command](args)
