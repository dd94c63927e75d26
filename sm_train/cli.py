"""Entry point: subcommands, help, logging, the failure file and the exit code.

python -m sm_train --help | -h | help [COMMAND]   the commands, one line each (also with no arguments outside a job)
python -m sm_train COMMAND --help                 a command's usage (usage.py); help never runs or writes anything
python -m sm_train [train] [--name value ...]      run a training job (the default inside a job tree)
python -m sm_train metric-definitions --task T    the estimator's metric_definitions as JSON
python -m sm_train hyperparameters [--task T]     the hyperparameter reference as a Markdown table
python -m sm_train local --channel NAME=PATH ... [--root DIR] [--checkpoints DIR] -- --name value ...
                                                  a job on local folders, in an /opt/ml-shaped tree (local.py)
python -m sm_train check [as local, or --root TREE ...]
                                                  preflight: every problem of a job, found without training
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from sm_train import env as sm_env
from sm_train import outputs, signals, usage
from sm_train.errors import Interrupted, PushFailed, UserError, disk_full_reason
from sm_train.reasons import failure_reason
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
    # transformers passes its lines on to the root logger too where CI is set: each would be written twice.
    transformers.utils.logging.disable_propagation()
    datasets.utils.logging.disable_propagation()
    if not sys.stdout.isatty():
        # tqdm's carriage returns turn CloudWatch logs into noise and break metric scraping.
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    from sm_train.progress import plain_text

    # Log lines written to a file or a pipe carry no ANSI styles (transformers' load report is bold).
    for name in ("", "transformers", "datasets"):  # the libraries write through handlers of their own
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if _is_terminal(stream):
                handler.removeFilter(plain_text)
            else:
                handler.addFilter(plain_text)


def _is_terminal(stream: object) -> bool:
    """A handler's stream is a terminal (False for a closed one: a library's handler may outlive its stream)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _written(environment: sm_env.SageMakerEnv, checkpoints: Path) -> dict[str, Path]:
    """The directories a job writes, by role, to say which one filled up."""
    return {
        "the checkpoint dir": checkpoints,
        "the model dir": environment.model_dir,
        "the output dir": environment.output_dir,
        "the temporary dir": Path(tempfile.gettempdir()),
    }


def _launched(environment: sm_env.SageMakerEnv) -> sm_env.SageMakerEnv:
    """The environment as torch needs it: an MPI launch sets only Open MPI's variables, and without torch's every rank
    would train alone. Exported before parsing: TrainingArguments sets up the device as it is built."""
    from sm_train import dist, smdist

    # SMDDP: fails at once when it cannot run here, else gives torch's variables and SMDATAPARALLEL_LOCAL_RANK.
    variables = smdist.data_parallel_environment(environment) or dist.torch_variables(dist.topology(environment))
    if not variables:
        return environment
    for name, value in variables.items():
        os.environ.setdefault(name, value)
    return sm_env.from_environ()


def inside_job(environ: Mapping[str, str]) -> bool:
    """Whether this process runs in a SageMaker job tree, which `train` reads and writes. Outside one a job can only
    fail, and its failure file would create /opt/ml/output/ on the user's machine (opened with "x", it then blocks
    the next run's). A tree is there when SageMaker made it (the input config dir env.py reads exists: /opt/ml's, or
    SM_INPUT_CONFIG_DIR), when SAGEMAKER_BASE_DIR names one (`local`, tests/jobs.py, a plain command line), under
    SageMaker's training toolkit (SM_TRAINING_ENV), and under a launcher (torchrun, mpirun), whose ranks must not
    refuse one by one."""
    launched = bool(sm_env.launcher_variables(environ))
    return (
        "SAGEMAKER_BASE_DIR" in environ
        or "SM_TRAINING_ENV" in environ
        or launched
        or sm_env.config_dir_of(environ).is_dir()
    )


def train(argv: Sequence[str]) -> int:
    if not inside_job(os.environ):  # before logging and the failure handler: nothing runs, nothing is written
        print(usage.not_a_job(str(sm_env.config_dir_of(os.environ))), file=sys.stderr)
        return 2
    environment: sm_env.SageMakerEnv | None = None  # until the config files are read (inside the failure handler)
    guard: outputs.OutputGuard | None = None
    secrets: list[str] = []
    checkpoints: Path | None = None  # until the configuration says where
    try:
        with signals.interrupt_process_on_signal(lambda: "while starting: this attempt trained and saved nothing."):
            setup_logging()
            environment = sm_env.from_environ()
            guard = outputs.OutputGuard((environment.model_dir, environment.output_data_dir))
            checkpoints = environment.checkpoint_dir
            from sm_train import collective, config, device, dist, local, runner, smdist

            local.hand_over_to_toolkit(environment, os.environ)  # script mode in sm_train's image: does not return
            environment = _launched(environment)
            items = config.source_items(environment, argv)
            # A token in the environment (HF_TOKEN, as the README recommends) is scrubbed like a hyperparameter's.
            secrets = secret_values([*items, *((k, v) for k, v in os.environ.items() if k in TOKEN_VARIABLES)])
            hardware = device.describe()  # the device's defaults (precision, data loading): parsing asks no hardware
            cfg = config.parse(items, environment, hardware)  # the sources read once
            smdist.check(cfg, environment)  # smdistributed asked for: runs here, or fails before data and model load
            topo = dist.topology(environment)
            command = dist.relaunch_command(topo, environment, dist.gpu_count(environment), argv, dist.entry_point())
            if command and cfg.job.auto_launch:
                dist.relaunch(command, os.environ)  # does not return: torchrun runs this job in its processes
        checkpoints = Path(cfg.training_args.output_dir)
        runner.run(cfg, environment, hardware)
        collective.leave_process_group()
    except BaseException as error:  # noqa: B036 - tokenizers' PanicException derives from BaseException
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        written = _written(environment, checkpoints) if environment and checkpoints else {}
        reason = scrub(disk_full_reason(error, written) or failure_reason(error), secrets)
        if isinstance(error, Interrupted):  # asked for, not a fault: the reason alone
            logger.warning("%s", reason)
        else:
            logger.error("%s\n%s", reason, scrub(traceback.format_exc(), secrets))
        outputs.write_failure(environment.output_dir if environment else sm_env.output_dir_of(os.environ), reason)
        if guard is not None and not isinstance(error, PushFailed):  # after a failed push the outputs are complete
            guard.clean()
        return error.exit_code if isinstance(error, Interrupted) else 1
    return 0


def _task_option(command: str, argv: Sequence[str]) -> str | None:
    """The value of --task, the one option the helper commands take. Keys are normalized here: argv_items returns
    them as given ("--task"), and looking up "task" in those silently printed text classification's
    definitions for every task."""
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
    from sm_train.catalog import metric_names  # light: no torch, transformers or datasets (a notebook)
    from sm_train.metrics import metric_definitions as definitions

    try:
        names = metric_names(_task_option("metric-definitions", argv) or "text-classification")
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    print(json.dumps(definitions(names), indent=2))
    return 0


def hyperparameters(argv: Sequence[str]) -> int:
    # Light imports only: no torch, transformers or datasets (a notebook with only the SDK).
    from sm_train.catalog import ARGS, hyperparameter_reference, task_args
    from sm_train.compat import ALWAYS, RULES
    from sm_train.job_args import JobArgs
    from sm_train.trajectory import EXTEND, FREE

    try:
        name = _task_option("hyperparameters", argv)
        tasks = [(name, task_args(name))] if name else list(ARGS.items())
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    tables = [("every task", JobArgs)] + [(f"task={name}", args) for name, args in tasks]
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
    for old, rule in {**ALWAYS, **RULES}.items():
        print(f"| `{old}` | {f'`{rule.new}`' if rule.new else 'dropped'} | {rule.why} |")
    return 0


def local_job(argv: Sequence[str]) -> int:
    from sm_train import local

    return local.main(argv, os.environ)


def check(argv: Sequence[str]) -> int:
    setup_logging()
    from sm_train import preflight

    return preflight.main(argv, os.environ)


COMMANDS = {
    "train": train,
    "metric-definitions": metric_definitions,
    "hyperparameters": hyperparameters,
    "local": local_job,
    "check": check,
}


def show_help(topic: Sequence[str]) -> int:
    """The list of commands, or one command's usage, on stdout; nothing else runs."""
    if topic and topic[0] not in usage.USAGE:
        print(f"Unknown command {topic[0]!r}; the commands: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    print(usage.USAGE[topic[0]] if topic else usage.overview())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("help", *usage.HELP_FLAGS):
        return show_help(args[1:2] if args[0] == "help" else [])
    if not args and not inside_job(os.environ):  # a person trying the command, not a job
        return show_help([])
    command = args.pop(0) if args and args[0] in COMMANDS else "train"
    if usage.asks_help(command, args):
        return show_help([command])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return COMMANDS[command](args)
