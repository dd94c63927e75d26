import io
import math
import re

import numpy as np
import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from sm_train.callbacks import MetricLines
from sm_train.cli import main
from sm_train.metrics import (
    MAX_DEFINITIONS,
    MAX_REGEX_LENGTH,
    classification_metrics,
    format_value,
    metric_definitions,
    metric_lines,
)
from sm_train.tasks import TASKS

VALUES = [5e-05, -0.3, float("nan"), 0.0, 12, 1e16, 0.6931471805599453, -2.5e-07, np.float32(0.25), np.int64(3)]
# The regexes published with the seed notebooks (huggingface/notebooks sagemaker 000): plain numbers only.
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


def test_metric_definitions_command(capsys) -> None:
    assert main(["metric-definitions", "--task", "text-classification"]) == 0
    import json

    printed = json.loads(capsys.readouterr().out)
    assert printed == metric_definitions(TASKS["text-classification"].metric_names)
    assert {"eval_accuracy", "eval_f1", "eval_loss", "train_runtime", "learning_rate"} <= {d["Name"] for d in printed}


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_callback_writes_one_event_in_one_write(monkeypatch, tmp_path) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    state = TrainerState()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    MetricLines().on_log(args, state, TrainerControl(), logs={"loss": 0.5, "learning_rate": 5e-05, "epoch": 1.0})
    assert stream.writes == 1
    assert stream.getvalue().count("\n") == 3 and "\r" not in stream.getvalue()


def test_callback_is_silent_off_rank_zero(monkeypatch, tmp_path) -> None:
    stream = CountingStream()
    monkeypatch.setattr("sys.stdout", stream)
    state = TrainerState(is_world_process_zero=False)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    MetricLines().on_log(args, state, TrainerControl(), logs={"loss": 0.5})
    assert stream.getvalue() == ""


def test_classification_metrics_binary_and_macro() -> None:
    binary = classification_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), 2)
    assert binary == {"accuracy": 0.75, "f1": pytest.approx(2 / 3), "precision": 0.5, "recall": 1.0}
    macro = classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]), 3)
    assert macro["accuracy"] == 0.75
    assert macro["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
