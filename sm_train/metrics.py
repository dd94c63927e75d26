"""Local metric functions, and the metric line format side by side with the regexes that read it back.

One metric per line, `[metric] <name> = <value>`, value last: the seed notebooks' regexes (`eval_loss.*=\\D*(.*?)$`)
and our own metric_definitions() both capture it. Values are Python reprs, so 5e-05 keeps its exponent.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: metric_definitions() runs without numpy (a notebook with only the SDK)
    import numpy as np

PREFIX = "[metric]"
# A number as repr() prints it (scientific notation, negatives) or nan/inf.
VALUE_REGEX = r"(-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?nan|-?inf)"
MAX_DEFINITIONS = 40  # AlgorithmSpecification.MetricDefinitions limit
MAX_REGEX_LENGTH = 500

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Sentence ends, for ROUGE-Lsum without NLTK downloads.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

TRAINING_LOG_NAMES = ("loss", "grad_norm", "learning_rate", "epoch")
TRAIN_RESULT_NAMES = (
    "train_loss",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
)
# model_preparation_time: an evaluation without training first (do_train=false) also times wrapping the model.
EVAL_RESULT_NAMES = ("loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


# Metrics where a smaller value is the better one; every other metric sm_train logs grows as the model improves.
LOWER_IS_BETTER = ("loss", "mse", "runtime")


def lower_is_better(name: str) -> bool:
    return name.endswith(LOWER_IS_BETTER)


def format_value(value: Any) -> str | None:
    """The printed form of a metric value; None for values that are not numbers."""
    import numpy as np

    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        return "nan" if math.isnan(value) else repr(value)
    return None


def metric_lines(metrics: Mapping[str, Any]) -> str:
    """All numeric metrics of one log event as lines; the caller writes them in a single write."""
    lines = []
    for name, value in metrics.items():
        text = format_value(value)
        if text is not None and re.fullmatch(r"\w+", name):
            lines.append(f"{PREFIX} {name} = {text}\n")
    return "".join(lines)


def metric_regex(name: str) -> str:
    return rf"\[metric\] {name} = {VALUE_REGEX}"


def metric_names(task_metrics: Iterable[str]) -> list[str]:
    """Every metric name a job of a task with these compute_metrics names logs: evaluations as eval_*, predictions
    on a test set as test_* (Trainer.predict names them so)."""
    scored = (*EVAL_RESULT_NAMES, *task_metrics)
    splits = [f"{split}_{m}" for split in ("eval", "test") for m in scored]
    return list(dict.fromkeys([*TRAINING_LOG_NAMES, *TRAIN_RESULT_NAMES, *splits]))


def metric_definitions(task_metrics: Iterable[str]) -> list[dict[str, str]]:
    """The estimator's metric_definitions, built from the same constants that format the lines."""
    return [{"Name": name, "Regex": metric_regex(name)} for name in metric_names(task_metrics)]


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> dict[str, float]:
    """accuracy, and f1/precision/recall: binary (positive = label id 1) for 2 labels, macro otherwise."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    average = "binary" if num_labels == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels,
        predictions,
        average=average,
        labels=list(range(num_labels)) if average == "macro" else None,
        zero_division=0,
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """pearson and spearmanr (correlations; nan when either side is constant) and mse."""
    import warnings

    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    predictions, labels = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
    constant = len(predictions) < 2 or np.ptp(predictions) == 0 or np.ptp(labels) == 0
    with warnings.catch_warnings():  # a constant side: the correlation is undefined (nan), said by the value
        warnings.simplefilter("ignore")
        pearson = float("nan") if constant else float(pearsonr(predictions, labels)[0])
        spearman = float("nan") if constant else float(spearmanr(predictions, labels)[0])
    return {"pearson": pearson, "spearmanr": spearman, "mse": float(np.mean((predictions - labels) ** 2))}


def multi_label_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """f1_micro and f1_macro over the labels, and exact_match: the share of rows with every label right (subset
    accuracy). predicted and labels: rows x labels, 1 where a label applies."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted, labels = predicted.astype(int), labels.astype(int)
    return {
        "f1_micro": float(f1_score(labels, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "exact_match": float(accuracy_score(labels, predicted)),
    }


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(predicted: list[str], expected: list[str]) -> float:
    """Token overlap F1 of two normalized answers."""
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(
    predictions: Mapping[str, str], references: Mapping[str, list[str]], with_negative: bool
) -> dict[str, float]:
    """exact_match and f1 (0-100, best over the gold answers); with SQuAD v2 also HasAns_* and NoAns_*.

    A question without gold answers is answered correctly only by the empty prediction.
    """
    scores: dict[str, list[tuple[float, float]]] = {"all": [], "HasAns": [], "NoAns": []}
    for question_id, golds in references.items():
        prediction = normalize_answer(predictions.get(question_id, ""))
        candidates = [normalize_answer(g) for g in golds or [""]]
        exact = max(float(prediction == g) for g in candidates)
        f1 = max(_f1(prediction.split(), g.split()) for g in candidates)
        scores["all"].append((exact, f1))
        scores["HasAns" if golds else "NoAns"].append((exact, f1))

    def mean(pairs: list[tuple[float, float]], index: int) -> float:
        return 100.0 * sum(p[index] for p in pairs) / len(pairs) if pairs else 0.0

    result = {"exact_match": mean(scores["all"], 0), "f1": mean(scores["all"], 1)}
    if with_negative:
        for group in ("HasAns", "NoAns"):
            result |= {
                f"{group}_exact": mean(scores[group], 0),
                f"{group}_f1": mean(scores[group], 1),
                f"{group}_total": len(scores[group]),
            }
    return result


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measures (0-100) with stemming; Lsum on newline-separated sentences, no NLTK downloads."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    totals = dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score("\n".join(SENTENCE_END.split(reference.strip())),
                              "\n".join(SENTENCE_END.split(prediction.strip())))  # fmt: skip
        for name in totals:
            totals[name] += scores[name].fmeasure
    return {name: 100 * total / max(len(predictions), 1) for name, total in totals.items()}
