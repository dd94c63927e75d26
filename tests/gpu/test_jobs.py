"""A tiny job per task on the GPU with sm_train's defaults for the device, as device.py decides them: mixed
precision (bf16 where the GPU computes in it, else fp16), batches padded to a multiple of 64, cuDNN attention off,
collation in worker processes with pinned memory. Each job trains, evaluates and saves a model that loads and runs
on the GPU (summarization evaluates with generate, in that precision)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from sm_train import device
from tests import tiny
from tests.gpu.jobs import resolved_config, run
from tests.jobs import Job, make_tree, write_rows

pytestmark = pytest.mark.gpu

FAST = {"epochs": 2, "train_batch_size": 8, "per_device_eval_batch_size": 8}
TASKS = {
    "text-classification": ({}, "eval_accuracy"),
    "question-answering": ({"max_seq_length": 64, "doc_stride": 24}, "eval_f1"),
    "summarization": ({"max_source_length": 64, "max_target_length": 16}, "eval_rouge1"),
}


def task_job(base: Path, task: str) -> Job:
    folder = base / "data" / "train"
    if task == "text-classification":
        write_rows(folder / "t.jsonl", [{"text": t, "label": label} for t, label in tiny.sentences(48)])
        model = tiny.build_encoder(base / "model")
    elif task == "question-answering":
        write_rows(folder / "t.jsonl", tiny.qa_rows(24))
        model = tiny.build_encoder(base / "model")
    else:
        write_rows(folder / "t.jsonl", tiny.dialogues(32))
        model = tiny.build_seq2seq(base / "model")
    hps = {"task": task, "model_name_or_path": str(model), **FAST, **TASKS[task][0]}
    return make_tree(base, hps, {"train": folder, "validation": folder})


def assert_gpu_defaults(job: Job) -> None:
    """The decisions for this GPU, from the job's log and its resolved configuration."""
    import torch

    config = resolved_config(job)
    args = config["training_args"]
    kind, other = ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16", "bf16")
    assert args[kind] is True and args[other] is False, (args["bf16"], args["fp16"])
    assert f"mixed precision: {kind} on {torch.cuda.get_device_name()}" in job.log
    assert "batches padded to a multiple of 64 tokens" in job.log
    assert config["job"]["cudnn_attention"] is False and "cuDNN attention off" in job.log
    environment = config["environment"]
    loading = device.dataloader_defaults(device.describe(), environment["num_cpus"], environment["num_gpus"])
    assert loading["dataloader_pin_memory"] is True
    assert {key: args[key] for key in loading} == loading


def assert_loads_and_runs(job: Job, task: str, on: str = "cuda") -> None:
    """The saved model and tokenizer load from the model dir and run on the GPU."""
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    classes = {
        "text-classification": AutoModelForSequenceClassification,
        "question-answering": AutoModelForQuestionAnswering,
        "summarization": AutoModelForSeq2SeqLM,
    }
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    model = classes[task].from_pretrained(job.model_dir).to(on).eval()
    texts = ["what color is it?", "alice: i like the red film ."] if task == "question-answering" else ["a good film"]
    encoded = tokenizer(*texts, return_tensors="pt").to(on)
    with torch.no_grad():
        if task == "summarization":
            ids = model.generate(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                                 max_new_tokens=8)  # fmt: skip
            assert ids.device.type == on and ids.shape[0] == 1
        else:
            output = model(**encoded)
            logits: Any = output.logits if task == "text-classification" else output.start_logits
            assert logits.device.type == on and torch.isfinite(logits).all()


@pytest.mark.parametrize("task", list(TASKS))
def test_a_tiny_job_per_task_with_the_gpu_defaults(tmp_path: Path, task: str) -> None:
    job = run(task_job(tmp_path, task))
    assert job.returncode == 0, job.log[-4000:]
    assert_gpu_defaults(job)
    results = job.results()
    assert math.isfinite(results["train_loss"]) and results["train_loss"] > 0
    assert TASKS[task][1] in results, sorted(results)
    assert (job.model_dir / "model.safetensors").is_file()
    assert_loads_and_runs(job, task)
