"""The tasks shipped with sm_train as plain data: each one's hyperparameters (Args) and metric names.

Imports nothing heavy (no torch, transformers, datasets or numpy), so the `metric-definitions` and `hyperparameters`
commands run where only Python and the SageMaker SDK are installed (a notebook). The Task classes in tasks/ take their
Args and metric_names from here (the one source); a task outside the package ('module:Class') is imported, which
needs the full install.
"""

from __future__ import annotations

import importlib
from dataclasses import MISSING, dataclass, field, fields

from sm_train.errors import ConfigError, require_at_least

# Text classification's problem types, as transformers' model configs name them (config.problem_type).
SINGLE_LABEL, REGRESSION, MULTI_LABEL = "single_label_classification", "regression", "multi_label_classification"
PROBLEM_TYPES = ("auto", SINGLE_LABEL, REGRESSION, MULTI_LABEL)


@dataclass
class TextClassificationArgs:
    text_column: str | None = field(default=None, metadata={"help": "Text column. Default: 'text', else 'sentence'."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Optional second text column (pairs)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column. Default: 'label', else 'labels'."})
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Truncate inputs to this many tokens. Default: min(512, tokenizer limit)."}
    )
    problem_type: str = field(
        default="auto",
        metadata={
            "help": "auto | single_label_classification | regression | multi_label_classification. auto reads "
            "it off the labels: a list per row is multi-label, numbers that are not all whole are regression."
        },
    )

    def __post_init__(self) -> None:
        require_at_least(8, " tokens", max_seq_length=self.max_seq_length)
        if self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type={self.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}.")


@dataclass
class QuestionAnsweringArgs:
    question_column: str = field(default="question", metadata={"help": "Question column."})
    context_column: str = field(default="context", metadata={"help": "Context column."})
    answer_column: str = field(
        default="answers", metadata={"help": "Answers column: {text: [...], answer_start: [...]}."}
    )
    max_seq_length: int = field(default=384, metadata={"help": "Tokens per window (question + context part)."})
    doc_stride: int = field(default=128, metadata={"help": "Tokens of overlap between the windows of a long context."})
    pad_to_max_length: bool = field(default=False, metadata={"help": "Pad every window to max_seq_length."})
    n_best_size: int = field(default=20, metadata={"help": "Start and end candidates searched per window."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    version_2_with_negative: bool = field(default=False, metadata={"help": "SQuAD v2: questions may have no answer."})
    null_score_diff_threshold: float = field(
        default=0.0, metadata={"help": "SQuAD v2: predict no answer when null score - best score exceeds this."}
    )

    def __post_init__(self) -> None:
        if self.doc_stride >= self.max_seq_length:
            raise ConfigError(
                f"doc_stride={self.doc_stride} must be smaller than max_seq_length={self.max_seq_length} "
                "(it is the overlap between windows, and the question takes room too)."
            )
        require_at_least(
            1,
            max_seq_length=self.max_seq_length,
            n_best_size=self.n_best_size,
            max_answer_length=self.max_answer_length,
        )


@dataclass
class SummarizationArgs:
    text_column: str | None = field(
        default=None, metadata={"help": "Text column. Default: dialogue, document, article or text, by layout."}
    )
    summary_column: str | None = field(
        default=None, metadata={"help": "Summary column. Default: summary or highlights, by layout."}
    )
    max_source_length: int = field(default=1024, metadata={"help": "Input tokens (capped by the model's limit)."})
    max_target_length: int = field(default=128, metadata={"help": "Summary tokens for training."})
    val_max_target_length: int | None = field(
        default=None, metadata={"help": "Summary tokens for evaluation and generation. Default: max_target_length."}
    )
    source_prefix: str | None = field(
        default=None, metadata={"help": "Text put before every input. Default: 'summarize: ' for T5 models."}
    )

    def __post_init__(self) -> None:
        require_at_least(
            1,
            max_source_length=self.max_source_length,
            max_target_length=self.max_target_length,
            val_max_target_length=self.val_max_target_length,
        )


# Each shipped task's hyperparameters, in the order the reference lists them.
ARGS: dict[str, type] = {
    "text-classification": TextClassificationArgs,
    "question-answering": QuestionAnsweringArgs,
    "summarization": SummarizationArgs,
}
# What each shipped task's compute_metrics returns, without the eval_ (or a test set's test_) prefix.
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    # single-label; regression; multi-label (exact_match: every label of a row right)
    "text-classification": (
        "accuracy",
        "f1",
        "precision",
        "recall",
        "pearson",
        "spearmanr",
        "mse",
        "f1_micro",
        "f1_macro",
        "exact_match",
    ),
    "question-answering": (
        "exact_match",
        "f1",
        "HasAns_exact",
        "HasAns_f1",
        "HasAns_total",
        "NoAns_exact",
        "NoAns_f1",
        "NoAns_total",
    ),
    "summarization": ("rouge1", "rouge2", "rougeL", "rougeLsum", "gen_len"),
}


def imported_task(task: str) -> type:
    """A task given as 'module:Class', imported from source_dir (its module needs the full install); the registry
    (sm_train.tasks.get_task) checks that it is a Task."""
    if ":" not in task:
        raise ConfigError(f"Unknown task {task!r}. Supported tasks: {', '.join(ARGS)} (or 'module:Class').")
    module_name, _, class_name = task.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"task={task!r}: cannot import {class_name} from {module_name} ({e}).") from e


def task_args(task: str) -> type:
    """The hyperparameter dataclass of a task."""
    return ARGS[task] if task in ARGS else imported_task(task).Args


def metric_names(task: str) -> tuple[str, ...]:
    """The names a task's compute_metrics returns."""
    return METRIC_NAMES[task] if task in METRIC_NAMES else tuple(imported_task(task).metric_names)


def hyperparameter_reference(dataclass_type: type) -> list[tuple[str, str, str]]:
    """(name, default, help) of each field, for the README's hyperparameter reference."""
    rows = []
    for f in fields(dataclass_type):
        default = "" if f.default in (MISSING, None) else f"`{f.default}`"
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
