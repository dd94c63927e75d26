"""LoRA jobs (use_lora) end to end: each task trains adapters with its head in full and saves a merged model or the
adapter alone; checkpoints hold the adapter; a run cut short or stopped by SIGTERM resumes to the very weights of
one that was not; other LoRA settings are refused on resume; two processes train as one; transformers 4.57 too."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sm_train import checkpoint, cli
from sm_train.tasks import TASKS
from tests import tiny
from tests.e2e.conftest import tf4_encoder, tf4_job
from tests.jobs import REPO, Job, job_env, make_tree, write_rows

LORA = {"use_lora": True, "lora_r": 4, "lora_alpha": 8, "seed": 5}
FAST = {**LORA, "max_steps": 2, "save_steps": 2, "train_batch_size": 4, "per_device_eval_batch_size": 4}
# A constant learning rate: a run cut at step 4 and extended to 6 trains as one that ran to 6 at once.
RESUMABLE = {**LORA, "max_steps": 6, "save_steps": 2, "train_batch_size": 8, "lr_scheduler_type": "constant",
             "merge_adapters": False}  # fmt: skip
ADAPTER = ("adapter_config.json", "adapter_model.safetensors")
FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def run(base: Path, monkeypatch: pytest.MonkeyPatch, hps: dict[str, Any], rows: list[dict]) -> Job:
    """An in-process job on `base` (its checkpoint dir kept from an earlier run there, a new model dir)."""
    job = Job(base / "opt" / "ml")
    if job.model_dir.exists():
        shutil.rmtree(job.model_dir)
        job.model_dir.mkdir()
        (job.root / "output" / "failure").unlink(missing_ok=True)
    data = {"train": write_rows(base / "data" / "train" / "train.jsonl", rows).parent}
    data["validation"] = write_rows(base / "data" / "validation" / "validation.jsonl", rows[:4]).parent
    job = make_tree(base, hps, data)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(job.root))
    job.returncode = cli.main(["train"])
    return job


def classification_rows(n: int = 16) -> list[dict]:
    return [{"text": text, "label": label} for text, label in tiny.sentences(n)]


def files(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def assert_adapter_only(job: Job, base_model: Path) -> dict:
    """The adapter (with its head), the task's config and the tokenizer; no model weights. Returns config.json."""
    saved = files(job.model_dir)
    assert set(ADAPTER) | {"config.json", "tokenizer.json"} <= saved and not saved & set(FULL_WEIGHTS), saved
    adapter = json.loads((job.model_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(base_model)
    return json.loads((job.model_dir / "config.json").read_text())


def assert_merged(job: Job, task: str) -> Any:
    """A plain model, no adapter files, loaded by the task's Auto class."""
    saved = files(job.model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= saved and not saved & set(ADAPTER), saved
    return TASKS[task].model_class.from_pretrained(str(job.model_dir))


def assert_checkpoints_hold_the_adapter(job: Job) -> None:
    newest = checkpoint.complete_checkpoints(job.root / "checkpoints")[-1][1]
    assert set(ADAPTER) <= files(newest) and not files(newest) & set(FULL_WEIGHTS)


def test_classification_merged_and_adapter_only_answer_alike(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """The same run saved both ways: the merged model (its Auto class) and the base with the adapter give the same
    logits; the adapter-only dir keeps the labels in config.json (a base loaded alone would get a random head)."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    rows, hps = classification_rows(), {"model_name_or_path": str(tiny_encoder), **FAST}
    merged = run(tmp_path / "merged", monkeypatch, hps, rows)
    assert merged.returncode == 0, merged.failure
    assert re.search(r"trainable parameters: [\d,]+ of [\d,]+ \([\d.]+%\); trained in full: classifier$",
                     capsys.readouterr().err, re.MULTILINE)  # fmt: skip
    adapter = run(tmp_path / "adapter", monkeypatch, {**hps, "merge_adapters": False}, rows)
    assert adapter.returncode == 0, adapter.failure
    config = assert_adapter_only(adapter, tiny_encoder)
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["problem_type"] == "single_label_classification"
    assert "classifier" in json.loads((adapter.model_dir / "adapter_config.json").read_text())["modules_to_save"]
    assert_checkpoints_hold_the_adapter(adapter)

    tokenizer = AutoTokenizer.from_pretrained(str(merged.model_dir))
    batch = tokenizer(["a wonderful film", "the plot was dreadful"], padding=True, return_tensors="pt")
    plain = assert_merged(merged, "text-classification").eval()
    assert plain.config.id2label == {0: "neg", 1: "pos"}
    base = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_encoder), config=AutoConfig.from_pretrained(str(adapter.model_dir))
    )
    with_adapter = PeftModel.from_pretrained(base, str(adapter.model_dir)).eval()
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, with_adapter(**batch).logits, atol=1e-5)
    assert merged.results()["train_loss"] == adapter.results()["train_loss"]


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "adapter-only"])
@pytest.mark.parametrize("task", ["question-answering", "summarization"])
def test_qa_and_summarization_lora_jobs(tmp_path, monkeypatch, tiny_encoder, task, merge) -> None:
    if task == "question-answering":
        model, rows, hps, head = tiny_encoder, tiny.qa_rows(8), {"max_seq_length": 64, "doc_stride": 24}, "qa_outputs"
    else:
        model, rows, head = tiny.build_seq2seq(tmp_path / "bart"), tiny.dialogues(8), None
        hps = {"max_source_length": 64, "max_target_length": 16, "generation_max_length": 16}
    hps = {"task": task, "model_name_or_path": str(model), **FAST, **hps, "merge_adapters": merge}
    job = run(tmp_path, monkeypatch, hps, rows)
    assert job.returncode == 0, job.failure
    assert_checkpoints_hold_the_adapter(job)
    assert ("generation_config.json" in files(job.model_dir)) == (task == "summarization")
    if merge:
        assert_merged(job, task)
        return
    assert_adapter_only(job, model)
    saved = json.loads((job.model_dir / "adapter_config.json").read_text())["modules_to_save"]
    assert (head in (saved or [])) if head else not saved  # BART's lm_head is tied to its embeddings: frozen


def adapter_weights(job: Job) -> dict[str, torch.Tensor]:
    return load_file(str(job.model_dir / "adapter_model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_a_cut_lora_run_resumes_exactly(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    rows = classification_rows(24)
    hps = {"model_name_or_path": str(tiny_encoder), **RESUMABLE}
    whole = run(tmp_path / "whole", monkeypatch, hps, rows)
    assert whole.returncode == 0, whole.failure
    cut = run(tmp_path / "cut", monkeypatch, {**hps, "max_steps": 4}, rows)
    assert cut.returncode == 0, cut.failure
    resumed = run(tmp_path / "cut", monkeypatch, hps, rows)
    assert resumed.returncode == 0, resumed.failure
    assert "resuming at step 4" in capsys.readouterr().err
    assert_identical(adapter_weights(resumed), adapter_weights(whole))


def test_other_lora_settings_are_refused_on_resume(tmp_path, monkeypatch, tiny_encoder) -> None:
    """A checkpoint of rank 4 cannot load into rank 8: the same-run rule names the change, and the checkpoint stays
    (it is not set aside as another model's, which would start afresh and rotate it away)."""
    rows = classification_rows()
    hps = {"model_name_or_path": str(tiny_encoder), **FAST}
    assert run(tmp_path, monkeypatch, hps, rows).returncode == 0
    for changed, named in (({"lora_r": 8}, "lora_r: 4 -> 8"), ({"use_lora": False}, "use_lora: true -> false")):
        job = run(tmp_path, monkeypatch, {**hps, **changed, "max_steps": 3}, rows)
        assert job.returncode != 0 and re.search(rf"Not resuming from .*checkpoint-2: .*{named}", job.failure or "")
        assert [p.name for _, p in checkpoint.complete_checkpoints(job.root / "checkpoints")] == ["checkpoint-2"]
    assert run(tmp_path, monkeypatch, {**hps, "max_steps": 3, "merge_adapters": False}, rows).returncode == 0


def start(job: Job) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sm_train", "train"], env=job_env(job.root), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(process: subprocess.Popen, job: Job) -> Job:
    job.stdout = process.communicate(timeout=600)[0]
    job.returncode = process.returncode
    return job


@pytest.mark.slow
@pytest.mark.external
def test_sigterm_mid_run_then_resume_gives_the_uninterrupted_adapter(tmp_path, tiny_encoder) -> None:
    from tests.e2e.test_resume import new_attempt, wait_for_training

    rows = classification_rows(96)
    write_rows(tmp_path / "data" / "train.csv", rows)
    hps = {"model_name_or_path": str(tiny_encoder), **LORA, "max_steps": 240, "save_steps": 3, "logging_steps": 20,
           "train_batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 5, "merge_adapters": False}  # fmt: skip
    whole = make_tree(tmp_path / "whole", hps, {"train": tmp_path / "data"})
    finish(start(whole), whole)
    assert whole.returncode == 0, whole.stdout[-3000:]
    job = make_tree(tmp_path / "stopped", hps, {"train": tmp_path / "data"})
    checkpoints = job.root / "checkpoints"
    process = start(job)
    wait_for_training(process, checkpoints)
    process.send_signal(signal.SIGTERM)
    finish(process, job)
    assert job.returncode == 128 + signal.SIGTERM, job.stdout[-3000:]
    step = checkpoint.complete_checkpoints(checkpoints)[-1][0]
    assert 0 < step < hps["max_steps"]
    new_attempt(job)
    finish(start(job), job)
    assert job.returncode == 0 and f"resuming at step {step}" in job.stdout, job.stdout[-3000:]
    assert_identical(adapter_weights(job), adapter_weights(whole))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.external
def test_lora_under_torchrun_in_two_cpu_processes_trains_as_one(tmp_path, monkeypatch) -> None:
    """Plain data parallel: the same global batch of 8 in one process and in two of 4 gives the same adapter."""
    encoder = tiny.build_encoder(tmp_path / "encoder", dropout=0.0)
    data = write_rows(tmp_path / "data" / "train.jsonl", classification_rows(48)).parent
    hps = {"model_name_or_path": str(encoder), **LORA, "lora_dropout": 0.0, "num_train_epochs": 1,
           "learning_rate": 0.1, "optim": "sgd", "max_grad_norm": 0, "train_sampling_strategy": "sequential",
           "save_steps": 3, "merge_adapters": False}  # fmt: skip
    two = make_tree(tmp_path / "two", {**hps, "per_device_train_batch_size": 4}, {"train": data})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
               "-m", "sm_train", "train"]  # fmt: skip
    done = subprocess.run(command, env=job_env(two.root), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert done.stdout.count("[metric] train_loss = ") == 1
    assert [step for step, _ in checkpoint.complete_checkpoints(two.root / "checkpoints")] == [3, 6]
    one = make_tree(tmp_path / "one", {**hps, "per_device_train_batch_size": 8}, {"train": data})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(one.root))
    assert cli.main(["train"]) == 0, one.failure
    assert two.results()["train_loss"] == pytest.approx(one.results()["train_loss"], abs=1e-5)
    a, b = adapter_weights(two), adapter_weights(one)
    assert a.keys() == b.keys()
    worst = max((a[name] - b[name]).abs().max().item() for name in a)
    assert worst < 1e-5, f"adapters differ by up to {worst}"


@pytest.mark.external
@pytest.mark.parametrize("merge", [True, False], ids=["merged", "adapter-only"])
def test_lora_job_on_transformers_4(tmp_path, merge) -> None:
    data = write_rows(tmp_path / "data" / "train.csv", classification_rows()).parent
    hps = {"model_name_or_path": str(tf4_encoder(tmp_path / "enc")), **FAST, "merge_adapters": merge}
    job = make_tree(tmp_path, hps, {"train": data, "validation": data})
    done = tf4_job(job)
    assert "trainable parameters: " in done.stderr and "[metric] eval_accuracy = " in done.stdout
    assert_checkpoints_hold_the_adapter(job)
    if merge:
        assert {"config.json", "model.safetensors"} <= files(job.model_dir)
        assert not files(job.model_dir) & set(ADAPTER)
    else:
        config = assert_adapter_only(job, tmp_path / "enc")
        assert config["id2label"] == {"0": "neg", "1": "pos"}
