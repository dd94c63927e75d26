"""THE ONLY place a hyperparameter becomes a typed value.

sources (hyperparameters.json / SM_HPS inside SageMaker, else argv) -> (key, value) items -> names translated
(compat.py) -> tokens rendered by the kind of the target field (dialects.py) -> one HfArgumentParser call over
(JobArgs, Task.Args, TrainingArguments or Seq2SeqTrainingArguments).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from sm_train import compat, defaults, device
from sm_train.dialects import argv_items, is_true, is_unset, normalize_key, render
from sm_train.env import SageMakerEnv, is_reserved
from sm_train.errors import ConfigError
from sm_train.job_args import JobArgs
from sm_train.metrics import lower_is_better
from sm_train.redact import redact_mapping
from sm_train.tasks import Task, get_task
from sm_train.validate import validate

logger = logging.getLogger(__name__)


@dataclass
class Config:
    """The typed job: what every later stage reads."""

    job: JobArgs
    task_args: Any
    training_args: TrainingArguments
    task_cls: type[Task]
    hyperparameters: dict[str, Any]  # the user's values after translation (unredacted: use redacted())
    explicit: frozenset[str]  # target names the user set, to tell "false" from "left at its default"

    def redacted(self) -> dict[str, Any]:
        return redact_mapping(self.hyperparameters)

    @property
    def saves_checkpoints(self) -> bool:
        return self.training_args.save_strategy != "no" or bool(self.job.save_every_minutes)

    def written_dirs(self, env: SageMakerEnv) -> dict[str, Path]:
        """The folders the job writes, by role: proven writable before any data is read."""
        checkpoints = {"the checkpoint dir": Path(self.training_args.output_dir)} if self.saves_checkpoints else {}
        return {"the model dir": env.model_dir, "the output dir": env.output_data_dir, **checkpoints}


class _Parser(HfArgumentParser):
    """HfArgumentParser over the tokens dialects.render() builds: errors become ConfigError instead of
    SystemExit(2), and only `--<field>` tokens are options, so every value reaches its field."""

    def __init__(self, dataclass_types: Iterable[type], **kwargs: Any) -> None:
        # No -h/--help (a value "-h" would print help and exit 0), no abbreviations (a value is never an option).
        super().__init__(dataclass_types, add_help=False, allow_abbrev=False, **kwargs)
        # report_to is typed `str | list[str]`, which HfArgumentParser reads as one string: a job could report to a
        # single integration ("tensorboard,mlflow" named none). A list, in any dialect, as transformers takes it.
        self._option_string_actions["--report_to"].nargs = "+"

    def _parse_optional(self, arg_string: str) -> Any:
        """argparse takes any token starting with '-' that is not a plain negative number for an option, so
        learning_rate=-5e-05 and run_name=-exp-1 failed with "expected one argument". Here a token is an option
        only when it names one of our fields; None means "a value" in Python 3.10 to 3.13 alike."""
        name = arg_string.split("=", 1)[0]
        if name.startswith("--") and name in self._option_string_actions:
            return super()._parse_optional(arg_string)
        return None

    def error(self, message: str) -> NoReturn:
        field_error = re.match(r"argument --(\w+)[^:]*: (.*)", message, re.DOTALL)
        if field_error is None:
            raise ConfigError(f"Invalid hyperparameters: {message}")
        name, detail = field_error.groups()
        typed = re.match(r"invalid (\w+) value: (.*)", detail)
        if typed:
            raise ConfigError(
                f"Hyperparameter '{name}' must be {_TYPE_NAMES.get(typed[1], typed[1])}, got {typed[2]}.", key=name
            )
        raise ConfigError(f"Hyperparameter '{name}': {detail}.", key=name)


_TYPE_NAMES = {"float": "a number", "int": "an integer"}


def source_items(env: SageMakerEnv, argv: Sequence[str]) -> list[tuple[str, Any]]:
    """Inside SageMaker the hyperparameters file/SM_HPS is the only source: argv is a lossy, and with toolkit 5.1.1
    shell-mangled, copy of it. Outside SageMaker argv is the source."""
    if env.hyperparameters is not None:
        if argv:
            logger.debug("ignoring argv %s: hyperparameters come from %s", list(argv), env.hyperparameters_source)
        return list(env.hyperparameters.items())
    return argv_items(argv)


def _kinds(parser: HfArgumentParser, dataclass_types: Iterable[type]) -> dict[str, str]:
    """Field name -> bool | list | dict | scalar, read from the schema itself."""
    dict_fields = set()
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        dict_fields |= {f.name for f in fields(dc) if "dict" in str(hints.get(f.name, ""))}
    kinds = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        if action.dest in dict_fields:
            kinds[action.dest] = "dict"
        elif action.type is string_to_bool:
            kinds[action.dest] = "bool"
        elif action.nargs in ("+", "*"):
            kinds[action.dest] = "list"
        else:
            kinds[action.dest] = "scalar"
    return kinds


def _unknown(key: str, known: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else " See the hyperparameter reference in the README."
    return ConfigError(f"Unknown hyperparameter '{key}'.{hint}")


def _task_name(items: Iterable[tuple[str, Any]]) -> str:
    names = [v for k, v in items if normalize_key(k) == "task" and not is_unset(v)]
    return str(names[-1]) if names else JobArgs.task


def _report(error: ConfigError, problems: list[str] | None) -> None:
    """Raise, or, when collecting (`check`), record the problem and go on without that value."""
    if problems is None:
        raise error
    problems.append(str(error))


def _values(items: Sequence[tuple[str, Any]], kinds: dict[str, str], problems: list[str] | None) -> dict[str, Any]:
    """Field name -> the value given for it. One value per field: a field named twice (an alias and its field,
    dashes and underscores, or a name repeated) fails naming both, never the later one silently winning."""
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for raw_key, raw_value in items:
        key = normalize_key(raw_key)
        if is_reserved(key):
            continue
        translated = compat.translate(key, raw_value, kinds)
        if translated is None:
            continue
        field_name, value = translated
        name = raw_key.lstrip("-")
        if field_name not in kinds:
            _report(_unknown(field_name, kinds), problems)
        elif field_name in values:
            first = given_as[field_name]
            both = f"'{name}' is given twice" if first == name else f"'{first}' and '{name}' both set '{field_name}'"
            _report(ConfigError(f"Hyperparameter {both}: keep one of them.", key=field_name), problems)
        else:
            values[field_name], given_as[field_name] = value, name
    return values


def parse(
    items: Sequence[tuple[str, Any]],
    env: SageMakerEnv,
    hardware: device.DeviceInfo,
    problems: list[str] | None = None,
) -> Config:
    """Typed Config from hyperparameter items. Raises ConfigError with a specific reason.

    hardware: the device the job runs on, described once by the caller (device.describe()): the defaults it calls
    for (precision, data loading) come from it, and parsing itself asks no hardware.
    problems: collect instead (`check`): each problem about one hyperparameter is appended and that value set
    aside, so the rest of the job can still be checked with what parses."""
    task_cls = get_task(_task_name(items))
    dataclass_types = (JobArgs, task_cls.Args, task_cls.training_args_class)
    parser = _Parser(dataclass_types)
    kinds = _kinds(parser, dataclass_types)
    values = _values(items, kinds, problems)
    while True:
        try:
            return _typed(values, env, hardware, task_cls, parser, kinds)
        except ConfigError as error:
            if problems is None or error.key not in values:
                raise
            problems.append(str(error))
            del values[error.key]


def _typed(
    values: dict[str, Any],
    env: SageMakerEnv,
    hardware: device.DeviceInfo,
    task_cls: type[Task],
    parser: _Parser,
    kinds: dict[str, str],
) -> Config:
    """The user's values over sm_train's defaults, typed by the fields and validated."""
    values = dict(values)
    given_checkpoints = values.get("checkpoint_dir")
    checkpoints = defaults.checkpoint_root(env, None if is_unset(given_checkpoints) else str(given_checkpoints))
    user_output_dir = values.pop("output_dir", None)
    if not is_unset(user_output_dir) and user_output_dir != str(checkpoints):
        logger.info(
            "output_dir=%s is not used: checkpoints go to %s and the final model to %s",
            user_output_dir,
            checkpoints,
            env.model_dir,
        )
    if is_unset(values.get("model_name_or_path")) and "model" in env.channels:
        values["model_name_or_path"] = str(env.channels["model"])
        logger.info("model_name_or_path defaults to the 'model' channel: %s", env.channels["model"])

    found = defaults.sagemaker_defaults(env, checkpoints, hardware, values)
    lowest = {k: v for k, v in found.items() if k in kinds}  # each transformers version lacks some
    stopping = not is_unset(values.get("early_stopping_patience"))
    early = defaults.early_stopping_defaults(values, task_cls) if stopping else {}
    tuning = defaults.tuning_defaults(env.tuning_objective, task_cls, values, stopping)
    merged = {**lowest, **task_cls.training_defaults, **early, **tuning, **values}
    best_model = is_true(merged.get("load_best_model_at_end"))
    if task_cls.best_metric and best_model and "metric_for_best_model" not in {**tuning, **values}:
        merged["metric_for_best_model"] = task_cls.best_metric
    best_metric = merged.get("metric_for_best_model")
    if not is_unset(best_metric) and is_unset(merged.get("greater_is_better")):
        # transformers takes any name not ending in "loss" for greater-is-better: mse would be maximised.
        merged["greater_is_better"] = not lower_is_better(str(best_metric))
    tokens = [token for key, value in merged.items() for token in render(key, value, kinds[key])]
    try:
        job, task_args, training_args = parser.parse_args_into_dataclasses(args=tokens, look_for_args_file=False)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"Invalid training arguments: {e}") from e
    validate(job, task_args, training_args, env.tracking)
    logger.info(
        "hyperparameters (%s): %s", env.hyperparameters_source, json.dumps(redact_mapping(values), default=str)
    )
    return Config(job, task_args, training_args, task_cls, values, frozenset(values))
