"""Adapter-only model dirs (use_lora with merge_adapters=false: the LoRA adapter with the trained head, the task's
config.json, the tokenizer, no model weights): deployable.make_deployable records the base model and requires peft, and
code/inference.py serves the base with the adapter merged in, answering as the PeftModel the job saved answers, with
each task's settings. What an endpoint lacks (peft, the base model's folder) is refused saying how to fix it; a merged
LoRA model dir is a plain model dir."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import transformers

from sm_train import deployable
from sm_train.serving import inference
from tests import tiny
from tests.unit.test_serving import ARGS, QA_ARGS, TEXTS

LABELS = {0: "neg", 1: "none", 2: "pos"}  # not the base's own random 2-label head
TASK_TYPES = {"text-classification": "SEQ_CLS", "question-answering": "QUESTION_ANS", "summarization": "SEQ_2_SEQ_LM"}
HEADS = {"text-classification": ["classifier"], "question-answering": ["qa_outputs"]}
QUESTIONS = [{"question": tiny.QUESTION, "context": row["context"]} for row in tiny.qa_rows(3, seed=4)]
DIALOGUES = [row["dialogue"] for row in tiny.dialogues(4, seed=2)]


def peft_model(base: Path, task: str) -> Any:
    """The task's model on `base` wrapped as a job trains it with use_lora: LoRA on every linear layer, the head
    trained in full (peft's modules_to_save for the task type), all of them moved from their initial values (LoRA's
    B starts at zero: an untrained adapter would change nothing). In eval mode."""
    from peft import LoraConfig, get_peft_model

    labels = {"num_labels": 3, "id2label": LABELS} if task == "text-classification" else {}
    model = getattr(transformers, inference.MODELS[task]).from_pretrained(base, **labels)
    if task == "summarization":  # the job's evaluation settings, not the base model's
        model.config.prefix = "summarize: "
        model.generation_config.max_length = 8
        model.generation_config.num_beams = 2
    head = HEADS.get(task)  # named as the job names it: all-linear then leaves it to modules_to_save
    config = LoraConfig(task_type=TASK_TYPES[task], r=4, target_modules="all-linear", modules_to_save=head)
    wrapped = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in wrapped.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return wrapped.eval()


def near(served: Any, expected: Any) -> bool:
    """Equal answers, numbers to 1e-4: merged weights (W + BA, summed once) round otherwise than the LoRA path."""
    if isinstance(expected, float):
        return served == pytest.approx(expected, rel=1e-4, abs=1e-4)
    if isinstance(expected, list | dict) and type(served) is type(expected) and len(served) == len(expected):
        if isinstance(expected, dict):
            return served.keys() == expected.keys() and all(near(served[k], v) for k, v in expected.items())
        return all(near(*pair) for pair in zip(served, expected, strict=True))
    return served == expected


def job_task(task: str) -> SimpleNamespace:
    task_args = QA_ARGS if task == "question-answering" else {}
    return SimpleNamespace(name=task, max_length=64, args=SimpleNamespace(**task_args))


def adapter_only(directory: Path, task: str) -> tuple[Path, Any]:
    """A model dir as a merge_adapters=false job leaves it, with make_deployable's code/, and its PeftModel."""
    build = tiny.build_seq2seq if task == "summarization" else tiny.build_encoder
    torch.manual_seed(0)  # the base model's initial weights: the same model dir on every run
    base = build(directory.parent / f"{directory.name}-base")
    wrapped = peft_model(base, task)
    wrapped.save_pretrained(directory)  # adapter_config.json, adapter_model.safetensors (LoRA and head)
    model = wrapped.get_base_model()
    model.config.save_pretrained(directory)
    if task == "summarization":
        model.generation_config.save_pretrained(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    tokenizer.save_pretrained(directory)
    deployable.make_deployable(directory, tokenizer.model_input_names, job_task(task), ARGS)
    assert not [p.name for p in directory.iterdir() if p.name.startswith(("model", "pytorch_model"))]
    return directory, wrapped


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return adapter_only(tmp_path_factory.mktemp("lora") / "classifier", "text-classification")


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return adapter_only(tmp_path_factory.mktemp("lora") / "qa", "question-answering")


@pytest.fixture(scope="module")
def summarizer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    return adapter_only(tmp_path_factory.mktemp("lora") / "summarizer", "summarization")


def ask(served: Any, request: dict[str, Any]) -> Any:
    """One request through input_fn -> predict_fn -> output_fn, as the toolkit sends it."""
    data = inference.input_fn(json.dumps(request).encode(), "application/json")
    return json.loads(inference.output_fn(inference.predict_fn(data, served), "application/json"))


def scores(model: Any, tokenizer: Any, text: str) -> dict[str, float]:
    with torch.no_grad():
        probabilities = model(**tokenizer(text, return_tensors="pt")).logits[0].softmax(-1).tolist()
    return {LABELS[i]: p for i, p in enumerate(probabilities)}


def test_classification_serves_the_adapters_labels_and_scores(classifier) -> None:
    model_dir, wrapped = classifier
    served = inference.model_fn(str(model_dir))
    assert type(served.model).__name__ == "BertForSequenceClassification"  # merged: no LoRA step per request
    assert served.model.config.id2label == LABELS
    ranked = ask(served, {"inputs": TEXTS, "parameters": {"top_k": 3}})
    expected = [scores(wrapped, served.tokenizer, text) for text in TEXTS]
    assert near([{a["label"]: a["score"] for a in answers} for answers in ranked], expected)
    assert [[a["label"] for a in answers] for answers in ranked] == [sorted(e, key=e.get, reverse=True)
                                                                     for e in expected]  # fmt: skip
    with wrapped.disable_adapter():  # the adapter and the head matter: the base alone scores otherwise
        assert not near(scores(wrapped, served.tokenizer, TEXTS[0]), expected[0])


def test_question_answering_serves_the_adapters_answers(reader) -> None:
    model_dir, wrapped = reader
    served = inference.model_fn(str(model_dir))
    request = {"inputs": QUESTIONS}
    answers = ask(served, request)
    own = served._replace(model=wrapped)
    assert near(answers, ask(own, request))
    with wrapped.disable_adapter():
        assert not near(answers, ask(own, request))


def test_summarization_serves_the_adapters_summaries_with_the_jobs_generation_settings(summarizer) -> None:
    model_dir, wrapped = summarizer
    served = inference.model_fn(str(model_dir))
    generation = served.model.generation_config
    assert (generation.max_length, generation.num_beams) == (8, 2)  # the model dir's, not the base model's
    request = {"inputs": DIALOGUES}
    summaries = ask(served, request)
    own = served._replace(model=wrapped)
    assert summaries == ask(own, request)
    assert all(summary["summary_text"] for summary in summaries)
    with wrapped.disable_adapter():
        assert summaries != ask(own, request)


def test_make_deployable_records_the_base_and_requires_peft(classifier, tmp_path: Path, caplog) -> None:
    model_dir, _ = classifier
    code = model_dir / "code"
    assert sorted(p.name for p in code.iterdir()) == ["inference.py", "requirements.txt", "serving.json"]
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert (code / "requirements.txt").read_text() == f"peft>={adapter['peft_version']}\n"
    assert json.loads((code / "serving.json").read_text())["base_model"] == adapter["base_model_name_or_path"]

    copy = Path(shutil.copytree(model_dir, tmp_path / "copy"))
    with caplog.at_level(logging.WARNING, logger="sm_train.deployable"):
        deployable.write_serving(copy, job_task("text-classification"), ARGS)
    assert f"the adapter's base model is '{adapter['base_model_name_or_path']}', a path an endpoint" in caplog.text
    assert "SM_TRAIN_BASE_MODEL" in caplog.text and "merge_adapters=true" in caplog.text

    caplog.clear()  # a Hub id, and an adapter saved by a peft that records a development release
    adapter |= {"base_model_name_or_path": "an-org/tiny-bert", "peft_version": "0.22.0.dev0@0123abc"}
    (copy / "adapter_config.json").write_text(json.dumps(adapter))
    with caplog.at_level(logging.WARNING, logger="sm_train.deployable"):
        deployable.write_serving(copy, job_task("text-classification"), ARGS)
    assert not caplog.text
    assert json.loads((copy / "code" / "serving.json").read_text())["base_model"] == "an-org/tiny-bert"
    assert (copy / "code" / "requirements.txt").read_text() == "peft>=0.22.0\n"


def with_settings(model_dir: Path, directory: Path, **settings: Any) -> Path:
    """A copy of the model dir, its serving.json changed."""
    copy = Path(shutil.copytree(model_dir, directory))
    path = copy / "code" / "serving.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | settings))
    return copy


def test_the_base_model_is_chosen_at_the_endpoint_first(classifier, tmp_path: Path, monkeypatch) -> None:
    """SM_TRAIN_BASE_MODEL, then serving.json's base_model, then the adapter's own; a relative folder is one inside
    the model dir (a base shipped with the model)."""
    model_dir, _ = classifier
    expected = ask(inference.model_fn(str(model_dir)), {"inputs": TEXTS, "parameters": {"top_k": 3}})
    gone = str(tmp_path / "gone" / "base")
    copy = with_settings(model_dir, tmp_path / "shipped", base_model=gone)
    base = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    shutil.copytree(base, copy / "base")
    with pytest.raises(FileNotFoundError, match=f"base model '{gone}' is not a folder"):
        inference.model_fn(str(copy))  # serving.json's base_model before the adapter's (which exists here)
    monkeypatch.setenv(inference.BASE_MODEL, "base")
    assert near(ask(inference.model_fn(str(copy)), {"inputs": TEXTS, "parameters": {"top_k": 3}}), expected)
    monkeypatch.delenv(inference.BASE_MODEL)
    copy = with_settings(copy, tmp_path / "set", base_model="base")
    assert near(ask(inference.model_fn(str(copy)), {"inputs": TEXTS, "parameters": {"top_k": 3}}), expected)
    monkeypatch.setenv(inference.BASE_MODEL, "an-org/tiny-bert")  # a Hub id goes to transformers (offline here)
    with pytest.raises(OSError, match="an-org/tiny-bert") as hub:
        inference.model_fn(str(copy))
    assert "not a folder on this endpoint" not in str(hub.value)


def test_a_base_path_the_endpoint_lacks_is_refused_saying_how_to_fix_it(classifier, tmp_path: Path) -> None:
    model_dir, _ = classifier
    gone = "/opt/ml/input/data/model/not-here"
    with pytest.raises(FileNotFoundError) as refused:
        inference.model_fn(str(with_settings(model_dir, tmp_path / "copy", base_model=gone)))
    assert str(refused.value) == (
        f"The adapter's base model '{gone}' is not a folder on this endpoint. Set SM_TRAIN_BASE_MODEL in the "
        "endpoint's environment (or base_model in code/serving.json) to the base's Hub model id or to a folder "
        "inside the model dir that holds it, or deploy a merged model: train with merge_adapters=true."
    )


def test_without_peft_the_endpoint_is_told_what_to_install(classifier, monkeypatch) -> None:
    model_dir, _ = classifier
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft raises ImportError
    with pytest.raises(ImportError, match=r"holds a LoRA adapter without its base model's weights: serving it needs "
                                          r"the peft package .*code/requirements.txt names it"):  # fmt: skip
        inference.model_fn(str(model_dir))


def test_a_merged_lora_model_dir_serves_as_any_model_dir(tmp_path: Path, monkeypatch) -> None:
    """merge_adapters=true (the default): a plain model dir; no peft needed, no base model named."""
    base = tiny.build_encoder(tmp_path / "base")
    wrapped = peft_model(base, "text-classification")
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    expected = [scores(wrapped, tokenizer, text) for text in TEXTS]
    model_dir = tmp_path / "model"
    wrapped.merge_and_unload().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    deployable.make_deployable(model_dir, tokenizer.model_input_names, job_task("text-classification"), ARGS)
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["inference.py", "serving.json"]
    assert "base_model" not in json.loads((model_dir / "code" / "serving.json").read_text())
    monkeypatch.setitem(sys.modules, "peft", None)  # the endpoint needs no peft for it
    ranked = ask(inference.model_fn(str(model_dir)), {"inputs": TEXTS, "parameters": {"top_k": 3}})
    assert near([{a["label"]: a["score"] for a in answers} for answers in ranked], expected)
