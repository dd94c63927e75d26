"""lora.py: use_lora's checks at parse time, the model it trains (adapters, the task's head in full), the same-run
rule over its settings, and LoRA checkpoints as complete, checkable and loadable as full ones."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    TrainingArguments,
)

from sm_train import checkpoint, cli, lora, sharded, trajectory
from sm_train.callbacks import _write_missing_weights
from sm_train.errors import ConfigError
from sm_train.sharded import is_adapted
from sm_train.tasks import TASKS
from tests import tiny
from tests.jobs import write_rows


@pytest.fixture(scope="module")
def bart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny.build_seq2seq(tmp_path_factory.mktemp("bart"))


def job(**values) -> SimpleNamespace:
    settings = {"use_lora": True, "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_target_modules": None,
                "merge_adapters": True, "smp_parameters": None}  # fmt: skip
    return SimpleNamespace(**{**settings, **values})


def installed(monkeypatch: pytest.MonkeyPatch, peft: str | None) -> None:
    """importlib.metadata as if this peft were installed (None: not at all)."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name != "peft":
            return real(name)
        if peft is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return peft

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_peft_older_than_transformers_needs_is_refused_at_parse_time(parsed, monkeypatch) -> None:
    installed(monkeypatch, "0.17.1")
    with pytest.raises(ConfigError) as refused:
        parsed(use_lora="true")
    assert "peft 0.18.0 or newer" in str(refused.value) and "peft 0.17.1 is installed" in str(refused.value)
    assert "pip install 'peft>=0.18.0'" in str(refused.value) and "requirements.txt" in str(refused.value)
    assert refused.value.key == "use_lora" and lora.required_peft("5.0.0") == "0.18.0"
    assert parsed(use_lora="false").job.use_lora is False  # without LoRA peft is never asked for


def test_missing_peft_names_what_to_install(parsed, monkeypatch) -> None:
    installed(monkeypatch, None)
    with pytest.raises(ConfigError, match=r"needs the peft package, which is not installed: pip install 'peft>="):
        parsed(use_lora="true")
    installed(monkeypatch, "0.18.0")
    assert parsed(use_lora="true").job.use_lora is True


@pytest.mark.parametrize(
    ("extra", "named"),
    [({"fsdp": "full_shard"}, "FSDP"), ({"mp_parameters": '{"hybrid_shard_degree": 2}'}, "model parallel")],
)
def test_sharded_training_is_refused_with_lora(parsed, extra, named) -> None:
    with pytest.raises(ConfigError, match=rf"use_lora=true does not run with [^:]*{named}.*plain data parallel"):
        parsed(use_lora="true", **extra)
    assert parsed(use_lora="false", **extra).job.use_lora is False


def test_deepspeed_is_refused_with_lora() -> None:
    args = SimpleNamespace(fsdp=[], deepspeed={"zero_optimization": {"stage": 3}})
    with pytest.raises(ConfigError, match="does not run with DeepSpeed"):
        lora.check(job(), args)
    lora.check(job(), SimpleNamespace(fsdp=[], deepspeed=None))  # one process or plain DDP


@pytest.mark.parametrize(("name", "value"), [("lora_r", 0), ("lora_alpha", 0), ("lora_dropout", 1.0)])
def test_lora_values_out_of_range(parsed, name, value) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}' must be at least"):
        parsed(use_lora="true", **{name: value})


def adapted(path: Path, task: str = "text-classification", loader=AutoModelForSequenceClassification, **settings):
    return lora.adapt(loader.from_pretrained(str(path)), job(**settings), TASKS[task], None)


@pytest.mark.parametrize(
    ("loader", "model", "task", "head"),
    [
        (AutoModelForSequenceClassification, "encoder", "text-classification", "classifier"),
        (AutoModelForQuestionAnswering, "encoder", "question-answering", "qa_outputs"),
        (AutoModelForSequenceClassification, "bart", "text-classification", "classification_head"),
    ],
)
def test_the_head_trains_in_full_beside_the_adapters(loader, model, task, head, tiny_encoder, bart, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="sm_train.lora"):
        peft_model = adapted(tiny_encoder if model == "encoder" else bart, task, loader)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert any(f"{head}.modules_to_save.default." in name for name in trainable)
    assert all("lora_" in name or f"{head}.modules_to_save" in name for name in trainable), trainable
    assert not any("lora_" in name for name in trainable if head in name)  # the head whole, not adapted
    saved = peft_model.peft_config["default"].modules_to_save
    assert head in saved and len(saved) == len(set(saved))
    assert f"trained in full: {head}" in caplog.text and "trainable parameters: " in caplog.text


def test_a_seq2seq_model_trains_adapters_only(bart) -> None:
    peft_model = adapted(bart, "summarization", AutoModelForSeq2SeqLM)
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)  # lm_head is tied to the embeddings: frozen
    assert type(peft_model).__name__ == "PeftModelForSeq2SeqLM"


def test_unknown_target_modules_name_the_models_linear_layers(tiny_encoder) -> None:
    with pytest.raises(
        ConfigError, match=r"lora_target_modules=\['q_proj'\]: q_proj names no module of Bert.*query.*value"
    ):
        adapted(tiny_encoder, lora_target_modules=["q_proj"])
    targets = adapted(tiny_encoder, lora_target_modules=["query", "value"]).peft_config["default"].target_modules
    assert {name.rsplit(".", 1)[-1] for name in targets} == {"query", "value"}
    plain = AutoModelForSequenceClassification.from_pretrained(str(tiny_encoder))
    assert lora.adapt(plain, job(use_lora=False), TASKS["text-classification"], None) is plain  # use_lora=false


def test_the_same_run_counts_lora_settings_but_not_the_merge(parsed) -> None:
    def identity(**values) -> dict:
        return trajectory.identity(parsed(**values), "m", "t", {"train data": "x"}, {})

    base = identity(use_lora="true", lora_r=4)
    assert trajectory.differences(base, identity(use_lora="true", lora_r=4, merge_adapters="false")) == []
    assert trajectory.differences(base, identity(use_lora="true", lora_r=8)) == ["lora_r: 4 -> 8"]
    plain = identity()
    assert "lora_r" not in plain  # a run without adapters is the same whatever lora_r says
    assert trajectory.differences(plain, identity(lora_r=16)) == []
    assert lora.other_settings(base, identity(use_lora="true", lora_r=8)) and lora.other_settings(plain, base)
    assert not lora.other_settings(base, identity(use_lora="true", lora_r=4, merge_adapters="false"))
    assert not lora.other_settings({"learning_rate": 1}, base)  # a checkpoint of an earlier sm_train


def peft_checkpoint(tmp_path: Path, model, step: int = 2) -> Path:
    """A LoRA checkpoint as Trainer writes it (the adapter, its config, optimizer, scheduler, state, random states),
    marked complete."""
    path = tmp_path / f"checkpoint-{step}"
    model.save_pretrained(str(path))
    for name in checkpoint.TRAINING_STATE:
        torch.save({"state": {}}, path / name)
    (path / checkpoint.STATE_FILE).write_text(json.dumps({"global_step": step}))
    torch.save({}, path / "rng_state.pth")
    checkpoint.write_manifest(path)
    return path


def test_an_adapter_checkpoint_is_complete_checked_and_loadable(tmp_path, tiny_encoder) -> None:
    model = adapted(tiny_encoder)
    path = peft_checkpoint(tmp_path, model)
    assert not (path / "model.safetensors").exists()
    assert checkpoint.problem(path) is None and checkpoint.load_problem(path, model) is None
    other_rank = adapted(tiny_encoder, lora_r=2)
    assert "lora_A.weight: (4, 32) here, (2, 32) in it" in checkpoint.load_problem(path, other_rank)
    plain = AutoModelForSequenceClassification.from_pretrained(str(tiny_encoder))
    assert "weights belong to another model" in checkpoint.load_problem(path, plain)


def test_a_torn_adapter_checkpoint_is_incomplete(tmp_path, tiny_encoder) -> None:
    model = adapted(tiny_encoder)
    truncated = peft_checkpoint(tmp_path, model, 2)
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # the header whole, the tensors cut
    checkpoint.write_manifest(truncated)  # sizes as they are now: only the file itself tells
    assert checkpoint.problem(truncated) == "adapter_model.safetensors is truncated"
    unconfigured = peft_checkpoint(tmp_path, model, 4)
    (unconfigured / "adapter_config.json").unlink()
    checkpoint.write_manifest(unconfigured)
    assert checkpoint.problem(unconfigured).startswith("adapter_config.json is missing")
    assert checkpoint.resolve_resume("auto", tmp_path) is None  # both set aside


def test_another_hosts_copy_gets_the_adapter(tmp_path, tiny_encoder) -> None:
    """save_on_each_node: transformers 5 writes weights on global rank 0 only; another host writes the adapter."""
    model = adapted(tiny_encoder)
    path = tmp_path / "checkpoint-2"
    path.mkdir()
    _write_missing_weights(SimpleNamespace(fsdp=[], deepspeed=None), model, path)
    assert (path / "adapter_config.json").is_file() and not (path / "model.safetensors").exists()
    assert sharded.weights_problem(path / "adapter_model.safetensors", model) is None


def test_an_adapter_only_dir_gets_the_tasks_config(tmp_path, tiny_encoder) -> None:
    lora.complete_adapter_dir(adapted(tiny_encoder), tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def trained(model):
    """As after training: the adapters' B matrices (zero at the start) and the head's trained copy moved."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


@pytest.mark.parametrize("merge", [True, False])
def test_the_final_save_answers_as_the_adapter_model(tmp_path, tiny_encoder, merge) -> None:
    from peft import PeftModel
    from transformers import AutoConfig, AutoTokenizer, Trainer

    from sm_train.trainer_seam import seam_class

    model = trained(adapted(tiny_encoder))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    batch = tokenizer(["a wonderful film", "the plot was dreadful and boring"], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
    args = TrainingArguments(str(tmp_path / "checkpoints"), report_to=[], use_cpu=True)
    trainer = seam_class(Trainer)(model=model, args=args, processing_class=tokenizer)
    directory = tmp_path / "model"
    trainer.save_deployable(directory, merge_adapters=merge)
    files = {path.name for path in directory.iterdir()}
    assert {"config.json", "tokenizer.json"} <= files
    if merge:
        assert "model.safetensors" in files and not any(name.startswith("adapter_") for name in files)
        assert not is_adapted(trainer.model)  # a push after the save sends the merged model too
        saved = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= files and "model.safetensors" not in files
        base = AutoModelForSequenceClassification.from_pretrained(
            str(tiny_encoder), config=AutoConfig.from_pretrained(str(directory))
        )
        saved = PeftModel.from_pretrained(base, str(directory)).eval()
    with torch.no_grad():
        after = saved(**batch).logits
    assert not torch.allclose(before, torch.zeros_like(before))
    assert torch.allclose(before, after, atol=1e-5), (before, after)


def check_argv(tmp_path: Path, encoder: Path, *hps: str) -> list[str]:
    rows = [{"text": t, "label": label} for t, label in tiny.sentences(16)]
    train = write_rows(tmp_path / "data" / "train" / "train.jsonl", rows).parent
    channel = ["--channel", f"train={train}", "--root", str(tmp_path / "tree")]
    return ["check", *channel, "--", "--model_name_or_path", str(encoder), "--use_lora", "true", *hps]


def test_check_reports_what_lora_trains(tmp_path, tiny_encoder, capsys) -> None:
    assert cli.main(check_argv(tmp_path, tiny_encoder, "--lora_r", "2")) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\[ok\] LoRA: rank 2, trainable parameters: [\d,]+ of [\d,]+ \([\d.]+%\)$", out, re.MULTILINE)
    assert "one training step on 2 inputs (CPU): loss" in out


def test_check_reports_peft_and_target_module_problems(tmp_path, tiny_encoder, monkeypatch, capsys) -> None:
    assert cli.main(check_argv(tmp_path, tiny_encoder, "--lora_target_modules", "q_proj")) == 1
    assert "LoRA: lora_target_modules=['q_proj']: q_proj names no module of Bert" in capsys.readouterr().out
    installed(monkeypatch, "0.17.1")
    assert cli.main(check_argv(tmp_path / "old", tiny_encoder)) == 1
    out = capsys.readouterr().out
    assert "hyperparameters: use_lora=true needs peft 0.18.0 or newer" in out
    assert "one training step on 2 inputs" in out  # the rest is still checked, without LoRA
