"""metrics.py: the metric line format, the regexes that read it back, and the local metric functions."""

import math
import re

import numpy as np
import pytest

from sm_train import cli
from sm_train.metrics import (
    MAX_DEFINITIONS,
    MAX_REGEX_LENGTH,
    classification_metrics,
    format_value,
    metric_definitions,
    metric_lines,
    multi_label_metrics,
    regression_metrics,
)
from sm_train.tasks import TASKS
from tests.jobs import assert_metric_lines_captured, make_tree, write_rows

VALUES = [5e-05, -0.3, float("nan"), 0.0, 12, 1e16, 0.6931471805599453, -2.5e-07, np.float32(0.25), np.int64(3)]


SEED_REGEXES = {
    "eval_accuracy": r"eval_accuracy.*=\D*(.*?)$",
    "eval_loss": r"eval_loss.*=\D*(.*?)$",
    "train_runtime": r"train_runtime.*=\D*(.*?)$",
}


def definitions(task: str = "text-classification") -> dict[str, re.Pattern]:
    return {d["Name"]: re.compile(d["Regex"]) for d in metric_definitions(TASKS[task].metric_names)}


@pytest.mark.parametrize("value", VALUES)
def test_line_and_regex_round_trip(value) -> None:
    regexes = definitions()
    for name in ("eval_loss", "learning_rate", "loss"):
        # Prefixes such as mpirun's "[1,mpirank:0,algo-1]<stdout>:" must not matter.
        text = "[1,mpirank:0,algo-1]<stdout>:" + metric_lines({name: value})
        captured = regexes[name].search(text).group(1)
        expected = float(value)
        assert (math.isnan(expected) and captured == "nan") or float(captured) == expected
        assert captured == format_value(value)


def test_scientific_notation_keeps_its_exponent() -> None:
    assert metric_lines({"learning_rate": 5e-05}) == "[metric] learning_rate = 5e-05\n"


def test_one_regex_captures_only_its_own_metric() -> None:
    regexes = definitions()
    text = metric_lines({"eval_loss": 0.5, "loss": 0.7, "train_loss": 0.9})
    assert regexes["loss"].findall(text) == ["0.7"]
    assert regexes["eval_loss"].findall(text) == ["0.5"]
    assert regexes["train_loss"].findall(text) == ["0.9"]


@pytest.mark.parametrize("value", [0.8125, 5e-05, 12.3456, 1])
def test_seed_notebook_regexes_capture_plain_numbers(value) -> None:
    for name, regex in SEED_REGEXES.items():
        lines = metric_lines({name: value}).splitlines()
        assert [float(re.search(regex, line).group(1)) for line in lines] == [value]


def test_non_numbers_are_not_printed() -> None:
    assert metric_lines({"eval_labels": ["a"], "note": "x", "bad name": 1.0}) == ""


@pytest.mark.parametrize("task", sorted(TASKS))
def test_definitions_fit_the_api_limits(task) -> None:
    found = metric_definitions(TASKS[task].metric_names)
    assert len(found) <= MAX_DEFINITIONS
    assert all(1 <= len(d["Regex"]) <= MAX_REGEX_LENGTH for d in found)
    assert len({d["Name"] for d in found}) == len(found)
    assert {f"eval_{m}" for m in TASKS[task].metric_names} <= {d["Name"] for d in found}
    assert {f"test_{m}" for m in TASKS[task].metric_names} <= {d["Name"] for d in found}  # Trainer.predict's
    assert {"test_loss", "test_runtime", "test_model_preparation_time"} <= {d["Name"] for d in found}


def test_classification_metrics_binary_and_macro() -> None:
    binary = classification_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), 2)
    assert binary == {"accuracy": 0.75, "f1": pytest.approx(2 / 3), "precision": 0.5, "recall": 1.0}
    macro = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    assert macro["accuracy"] == 0.75
    assert macro["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_regression_metrics() -> None:
    found = regression_metrics(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 2.0, 4.0, 3.0]))
    assert found["mse"] == pytest.approx((0 + 0 + 1 + 4) / 4)
    # deviations from the means (2.75, 2.5): their products sum to 4.5, their squares to 8.75 and 5; ranks differ by 1
    assert found["pearson"] == pytest.approx(4.5 / math.sqrt(8.75 * 5))
    assert found["spearmanr"] == pytest.approx(1 - 6 * 2 / (4 * (4**2 - 1)))
    constant = regression_metrics(np.array([2.0, 2.0]), np.array([1.0, 3.0]))  # undefined correlation: nan
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearmanr"]) and constant["mse"] == 1.0
    assert metric_lines({"eval_pearson": constant["pearson"]}) == "[metric] eval_pearson = nan\n"


def test_multi_label_metrics() -> None:
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    found = multi_label_metrics(predicted, labels)
    assert found["exact_match"] == 0.5  # rows 0 and 3 have every label right
    assert found["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))  # 4 true positives, 1 false each way
    assert found["f1_macro"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)  # per label: exact; a miss; a false one


def test_every_metric_of_an_evaluation_only_job_is_defined(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """Evaluation without training also prints eval_model_preparation_time."""
    rows = [{"text": "a good film", "label": "pos"}, {"text": "an awful plot", "label": "neg"}] * 4
    channels = {name: write_rows(tmp_path / "data" / name / "rows.jsonl", rows).parent for name in ("train", "test")}
    job = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), "do_train": False}, channels)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    assert cli.main(["train"]) == 0, job.failure
    out = capsys.readouterr().out
    assert "[metric] eval_model_preparation_time = " in out
    assert_metric_lines_captured(out, "text-classification")


def test_no_definition_reads_a_progress_or_summary_line(tmp_path) -> None:
    """Progress lines carry a loss and speeds but no `[metric]` prefix and no `=`: SageMaker charts none of them."""
    from transformers import TrainerState, TrainingArguments

    from sm_train.progress import Facts, progress_line, summary_lines

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    state = TrainerState(max_steps=1000, num_train_epochs=3, train_batch_size=8, global_step=10)
    lines = [
        progress_line(120, 1000, 0.36, 0.6931, 0.25, 32, 130.0),
        progress_line(1, 10, None, None, None, 8, 0.0),
        *summary_lines(args, state, Facts({"train": 100, "eval": 10}, keep=2)),
    ]
    assert lines[0] == "step 120/1000 (12%), epoch 0.36, loss 0.6931, 128.0 samples/s, elapsed 2m10s, ETA 3m40s"
    regexes = [re.compile(d["Regex"]) for task in TASKS for d in metric_definitions(TASKS[task].metric_names)]
    for line in lines:
        assert "=" not in line and "[metric]" not in line
        assert not [r.pattern for r in [*regexes, *map(re.compile, SEED_REGEXES.values())] if r.search(line)]
