"""Entry point: subcommands, logging, the failure file and the exit code.

python -m sm_train [train] [--name value ...]      run a training job (the default)
python -m sm_train metric-definitions --task T    the estimator's metric_definitions as JSON
python -m sm_train hyperparameters [--task T]     the hyperparameter reference as a Markdown table
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from sm_train import env as sm_env
from sm_train import outputs
from sm_train.errors import Interrupted, UserError, disk_full_reason, interrupt_on_signal
from sm_train.redact import scrub, secret_values

logger = logging.getLogger("sm_train")
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # tokens huggingface_hub reads from the environment


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
    if isinstance(error, ImportError):
        return f"Missing or incompatible package: {error}. Check requirements.txt against the container's packages."
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted (SIGINT) before the job finished."
    # Below: user problems that the checks before training cannot always see (#8 item 11).
    if isinstance(error, ValueError) and "trust_remote_code" in str(error):
        return (
            f"The model needs Python code from its own repository, which the job did not allow ({name}: "
            f"{str(error).splitlines()[0]}). Set trust_remote_code=true if you trust that code."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if _is_hub_error(error) and status in (401, 403):
        return (
            f"The Hugging Face Hub refused access ({status}: {error}). The token is missing, invalid, or may not "
            "read this model or write to hub_model_id: set HF_TOKEN in the estimator's environment (or hub_token) "
            "to a token with that access, or set push_to_hub=false."
        )
    if _is_hub_error(error) and "LocalTokenNotFound" in name:
        return (
            f"The job needs a Hugging Face token and has none ({error}): set HF_TOKEN in the estimator's environment "
            "(or hub_token), or set push_to_hub=false."
        )
    if _is_hub_error(error) and "Offline" in name:
        return (
            f"The job needs the Hugging Face Hub, but HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set ({error}): "
            "unset it, or use a 'model' channel and local data and set push_to_hub=false."
        )
    if _is_network_error(error):
        return (
            f"Could not reach the network ({name}: {error}). A Hub model id, dataset_name, push_to_hub or a "
            "report_to service need internet access, which a job with network isolation or in a VPC without a NAT "
            "gateway lacks: use a 'model' channel and local data, or give the job outbound access."
        )
    missing = re.search(r"(\w+)Callback requires (\S+) to be installed", str(error))
    if missing:
        return (
            f"report_to needs the {missing[2]} package, which is not installed ({error}): add it to requirements.txt "
            "in source_dir, or leave it out of report_to."
        )
    integration = _INTEGRATION_MODULES.get(type(error).__module__.split(".")[0])
    if integration:
        return (
            f"report_to={integration} failed ({name}: {error}). {_INTEGRATION_REMEDIES.get(integration, '')}"
            f"Set that service's credentials in the estimator's environment, or leave {integration} out of "
            "report_to."
        )
    return f"{name}: {error} (unexpected error inside sm_train; the full traceback is in the job log)"


# The top-level module of an exception -> the report_to integration that raised it.
_INTEGRATION_MODULES = {
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "neptune": "neptune",
    "clearml": "clearml",
    "dagshub": "dagshub",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
_INTEGRATION_REMEDIES = {
    "wandb": "A job has no terminal to log in from: set WANDB_API_KEY (or WANDB_MODE=offline). ",
    "mlflow": "Set MLFLOW_TRACKING_URI to a server the job can reach. ",
}
# Network libraries whose errors name the failure in the class: requests, httpx (huggingface_hub 1.x), urllib3.
_NETWORK_MODULES = ("requests", "httpx", "httpx2", "urllib3", "huggingface_hub")
_NETWORK_CLASSES = ("ConnectionError", "ConnectError", "ConnectTimeout", "Timeout", "TimeoutException")


def _is_hub_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("huggingface_hub")


def _is_network_error(error: BaseException) -> bool:
    """A connection failure of a network library, never a local ConnectionError (BrokenPipeError, a c10d store)."""
    if type(error).__module__.split(".")[0] not in _NETWORK_MODULES:
        return False
    return any(cls.__name__ in _NETWORK_CLASSES for cls in type(error).__mro__)


def _written(environment: sm_env.SageMakerEnv, checkpoints: Path) -> dict[str, Path]:
    """The directories a job writes, by role, to say which one filled up."""
    return {
        "the checkpoint dir": checkpoints,
        "the model dir": environment.model_dir,
        "the output dir": environment.output_dir,
        "the temporary dir": Path(tempfile.gettempdir()),
    }


def train(argv: Sequence[str]) -> int:
    environment = sm_env.from_environ()
    guard = outputs.OutputGuard((environment.model_dir, environment.output_data_dir))
    secrets: list[str] = []
    checkpoints = environment.checkpoint_dir  # until the configuration says otherwise
    try:
        with interrupt_on_signal(lambda: "while starting: this attempt trained and saved nothing."):
            setup_logging()
            from sm_train import config, runner

            items = config.source_items(environment, argv)
            # A token in the environment (HF_TOKEN, as the README recommends) is scrubbed like a hyperparameter's.
            secrets = secret_values([*items, *((k, v) for k, v in os.environ.items() if k in TOKEN_VARIABLES)])
            cfg = config.parse(items, environment)  # the sources read once
        checkpoints = Path(cfg.training_args.output_dir)
        runner.run(cfg, environment)
    except BaseException as error:  # noqa: B036 - tokenizers' PanicException derives from BaseException
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        reason = scrub(disk_full_reason(error, _written(environment, checkpoints)) or failure_reason(error), secrets)
        logger.error("%s\n%s", reason, scrub(traceback.format_exc(), secrets))
        outputs.write_failure(environment.output_dir, reason)
        guard.clean()
        return error.exit_code if isinstance(error, Interrupted) else 1
    return 0


def _task_option(command: str, argv: Sequence[str]) -> str | None:
    """The value of --task, the one option the helper commands take. Keys are normalized here: argv_items returns
    them as given ("--task"), and looking up "task" in those silently printed text classification's
    definitions for every task (#8 item 13)."""
    from sm_train.dialects import NO_VALUE, argv_items, normalize_key

    options = {normalize_key(key): value for key, value in argv_items(argv)}
    unknown = sorted(set(options) - {"task"})
    if unknown:
        raise UserError(f"{command} takes only --task <task>; got --{', --'.join(unknown)}.")
    task = options.get("task")
    if task is NO_VALUE or isinstance(task, list):
        raise UserError(f"{command}: --task takes one task name, e.g. --task question-answering.")
    return str(task) if task else None


def metric_definitions(argv: Sequence[str]) -> int:
    from sm_train.metrics import metric_definitions as definitions
    from sm_train.tasks import get_task

    try:
        task = get_task(_task_option("metric-definitions", argv) or "text-classification")
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps(definitions(task.metric_names), indent=2))
    return 0


def hyperparameters(argv: Sequence[str]) -> int:
    from sm_train.compat import RULES
    from sm_train.config import JobArgs, hyperparameter_reference
    from sm_train.tasks import TASKS, get_task
    from sm_train.trajectory import EXTEND, FREE

    try:
        name = _task_option("hyperparameters", argv)
        tasks = [(name, get_task(name))] if name else list(TASKS.items())
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    tables = [("every task", JobArgs)] + [(f"task={name}", task.Args) for name, task in tasks]
    for title, dataclass_type in tables:
        print(f"#### {title}\n\n| name | default | description |\n|---|---|---|")
        for row in hyperparameter_reference(dataclass_type):
            print("| `{}` | {} | {} |".format(*(cell.replace("|", "\\|") for cell in row)))
        print()
    print("#### Changes a restarted job may make and still resume\n")
    raised, free = (", ".join(f"`{name}`" for name in names) for names in (EXTEND, sorted(FREE)))
    print("Every other setting must match the run that made the checkpoint (see Spot instances).\n")
    print(f"May be raised, not lowered: {raised}. May change: {free}.\n")
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
