"""Batches padded to a multiple for every task (training and evaluation, inputs and labels), with the attention
backend decided before the first forward pass."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sm_train import training
from tests import tiny
from tests.e2e.test_jobs import FAST, run
from tests.jobs import write_rows


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every forward pass's tensor shapes, and whether cuDNN attention was allowed at that moment."""
    seen: list[dict[str, Any]] = []
    build = training.build_trainer

    def recording(*args: Any, **kwargs: Any) -> Any:
        trainer = build(*args, **kwargs)

        def hook(module: Any, positional: tuple, named: dict) -> None:
            shapes = {k: tuple(v.shape) for k, v in named.items() if isinstance(v, torch.Tensor)}
            seen.append({"shapes": shapes, "cudnn": torch.backends.cuda.cudnn_sdp_enabled()})

        trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
        return trainer

    monkeypatch.setattr(training, "build_trainer", recording)
    return seen


def data(tmp_path, task: str) -> tuple[dict[str, Any], dict]:
    folder = tmp_path / "data" / "train"
    if task == "text-classification":
        write_rows(folder / "t.jsonl", [{"text": t, "label": label} for t, label in tiny.sentences(24)])
        model = tiny.build_encoder(tmp_path / "model")
        extra = {"max_seq_length": 100}
    elif task == "question-answering":
        write_rows(folder / "t.jsonl", tiny.qa_rows(16))
        model = tiny.build_encoder(tmp_path / "model")
        extra = {"max_seq_length": 64, "doc_stride": 24}
    else:
        write_rows(folder / "t.jsonl", tiny.dialogues(16))
        model = tiny.build_seq2seq(tmp_path / "model")
        extra = {"predict_with_generate": False, "max_source_length": 64, "max_target_length": 16}
    hps = {"task": task, "model_name_or_path": str(model), **FAST, **extra}
    return hps, {"train": folder, "validation": folder}


@pytest.mark.parametrize("task", ["text-classification", "question-answering", "summarization"])
def test_every_batch_is_padded_to_the_multiple(tmp_path, monkeypatch, task) -> None:
    seen = record_batches(monkeypatch)
    hps, channels = data(tmp_path, task)
    job = run(tmp_path, monkeypatch, {**hps, "pad_to_multiple_of": 64}, channels)
    assert job.returncode == 0, job.failure
    assert len(seen) >= 4  # training and evaluation batches
    lengths = {shape[1] for batch in seen for name, shape in batch["shapes"].items() if len(shape) == 2}
    assert lengths and all(n % 64 == 0 for n in lengths), lengths
    if task == "summarization":
        assert any("labels" in batch["shapes"] for batch in seen)  # labels padded too (checked above)
    assert not any(batch["cudnn"] for batch in seen)  # off from the first forward on


def test_exact_padding_on_cpu_by_default(tmp_path, monkeypatch) -> None:
    seen = record_batches(monkeypatch)
    hps, channels = data(tmp_path, "text-classification")
    job = run(tmp_path, monkeypatch, hps, channels)
    assert job.returncode == 0, job.failure
    assert any(batch["shapes"]["input_ids"][1] % 8 for batch in seen)  # each batch to its own longest row


def test_evaluation_runs_longest_first_and_answers_in_dataset_order(tmp_path, monkeypatch) -> None:
    from datasets import Dataset

    from sm_train.tasks.base import in_dataset_order, length_order

    features = Dataset.from_dict({"input_ids": [[1], [1, 2, 3], [1, 2], [1, 2, 3]]})
    order = length_order(features)
    assert order.tolist() == [1, 3, 2, 0]
    assert in_dataset_order(["b", "d", "c", "a"], order) == ["a", "b", "c", "d"]

    seen = record_batches(monkeypatch)
    hps, channels = data(tmp_path, "text-classification")
    job = run(tmp_path, monkeypatch, {**hps, "eval_strategy": "no", "per_device_eval_batch_size": 4}, channels)
    assert job.returncode == 0, job.failure
    evaluation = [batch["shapes"]["input_ids"][1] for batch in seen[-6:]]  # 24 rows, batches of 4
    assert evaluation == sorted(evaluation, reverse=True)  # in the sorted order: no sampler reorders them


def test_length_grouping_reads_lengths_from_arrow_and_draws_per_epoch() -> None:
    """Each epoch's batches depend on (seed, epoch) only: a resumed attempt, whose global random state differs at
    the start of an epoch, draws the same ones."""
    from datasets import Dataset

    from sm_train.tasks.base import token_lengths
    from sm_train.trainer_seam import EpochSeededLengthGroupedSampler

    rows = Dataset.from_dict({"input_ids": [[1] * (3 + i % 17) for i in range(500)]})
    lengths = token_lengths(rows).tolist()
    assert lengths == [len(ids) for ids in rows["input_ids"]]
    original = EpochSeededLengthGroupedSampler(16, lengths, seed=42)
    epochs = []
    for epoch in range(3):
        original.set_epoch(epoch)
        torch.rand(7)  # other draws from the global random state change nothing
        epochs.append(list(original))
    assert epochs[0] != epochs[1] != epochs[2]
    resumed = EpochSeededLengthGroupedSampler(16, lengths, seed=42)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]
