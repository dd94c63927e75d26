"""Summarization through the real SageMaker toolkit: a BART-like and a T5-like model built in-process learn an easy
dialogue -> summary mapping, and the saved models summarize with their own generation config (whole summaries)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sm_train.metrics import metric_definitions
from sm_train.tasks import TASKS
from tests import tiny
from tests.e2e.conftest import serve
from tests.jobs import Job, assert_fails, assert_metric_lines_captured, make_tree, run_toolkit, write_rows

pytestmark = pytest.mark.external  # jobs in other processes (make test-fast leaves them out)

PROBE = "erin: i like the purple film . dave: the plot was quite the story ."


def summarize(model_dir: Path, text: str, **generate: int) -> str:
    """What the saved model writes with its own generation config (transformers 5 has no summarization pipeline)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    output = model.generate(**tokenizer([text], return_tensors="pt"), **generate)
    return tokenizer.decode(output[0], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def bart_job(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Job:
    """Custom column names, jsonl channels."""
    base = tmp_path_factory.mktemp("bart-job")
    model = tiny.build_seq2seq(base / "bart", "bart")
    for split, rows in (("train", tiny.dialogues(400)), ("validation", tiny.dialogues(30, seed=5))):
        write_rows(
            base / split / f"{split}.jsonl", [{"conversation": r["dialogue"], "gist": r["summary"]} for r in rows]
        )
    hps = {"task": "summarization", "model_name_or_path": str(model), "text_column": "conversation",
           "summary_column": "gist", "max_source_length": 64, "max_target_length": 16, "epochs": 15,
           "learning_rate": 3e-3, "train_batch_size": 16, "per_device_eval_batch_size": 16, "seed": 1}  # fmt: skip
    return run_toolkit(
        make_tree(base, hps, {"train": base / "train", "validation": base / "validation"}, source=source)
    )


def test_bart_learns_the_mapping(bart_job: Job) -> None:
    assert bart_job.returncode == 0, bart_job.log[-4000:]
    results = bart_job.results()
    # Always answering "<name> likes <color> ." with the wrong name and color scores about 50.
    assert results["eval_rouge1"] >= 80 and results["eval_rougeLsum"] >= 80
    assert 4 <= results["eval_gen_len"] <= 16
    predictions = (bart_job.output_data_dir / "generated_predictions.txt").read_text().splitlines()
    assert len(predictions) == 30 and all(" likes " in p for p in predictions)


def test_metric_lines_have_rouge(bart_job: Job) -> None:
    definitions = {d["Name"]: d["Regex"] for d in metric_definitions(TASKS["summarization"].metric_names)}
    results = bart_job.results()
    for name in ("eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_rougeLsum", "eval_gen_len"):
        assert float(re.findall(definitions[name], bart_job.stdout)[-1]) == results[name]
    assert_metric_lines_captured(bart_job.stdout, "summarization")


def test_bart_model_dir_deploys(bart_job: Job) -> None:
    generation = json.loads((bart_job.model_dir / "generation_config.json").read_text())
    assert generation["max_length"] == 16 and generation["num_beams"] == 1
    assert summarize(bart_job.model_dir, PROBE) == "erin likes purple."
    served = serve(bart_job.model_dir, {"inputs": PROBE})  # through the model dir's code/inference.py
    assert served["task"] == "summarization"
    assert served["prediction"][0]["summary_text"] == "erin likes purple."
    served = serve(bart_job.model_dir, {"inputs": PROBE}, hf_task="summarization", pipeline=True)  # without it
    assert served["task"] == "summarization"
    assert served["prediction"][0]["summary_text"].strip() == "erin likes purple."


def test_t5_long_summaries_with_seed_003_hyperparameters(tmp_path: Path, source: Path) -> None:
    """dataset_name (here a local dataset folder, through the Hub loading code), the T5 prefix, and summaries of
    24 tokens: the saved generation config must not cut them at transformers' default of 20."""
    model = tiny.build_seq2seq(tmp_path / "t5", "t5")
    write_rows(tmp_path / "dataset" / "train.jsonl", tiny.dialogues(400, long=True))
    write_rows(tmp_path / "dataset" / "validation.jsonl", tiny.dialogues(20, seed=5, long=True))
    hps = {"task": "summarization", "model_name_or_path": str(model), "dataset_name": str(tmp_path / "dataset"),
           "per_device_train_batch_size": 16, "per_device_eval_batch_size": 8, "do_train": True, "do_eval": True,
           "output_dir": "/opt/ml/model", "num_train_epochs": 15, "learning_rate": 3e-3, "seed": 7, "fp16": False,
           "max_source_length": 64, "max_target_length": 40}  # fmt: skip
    job = run_toolkit(make_tree(tmp_path, hps, {}, source=source))
    assert job.returncode == 0, job.log[-4000:]
    assert "prefix 'summarize: '" in job.log
    assert json.loads((job.model_dir / "config.json").read_text())["prefix"] == "summarize: "  # served inputs get it
    assert job.results()["eval_gen_len"] > 20
    whole = summarize(job.model_dir, "summarize: " + PROBE)
    assert whole.endswith(tiny.LONG_TAIL.replace(" .", "."))
    assert not summarize(job.model_dir, "summarize: " + PROBE, max_length=20).endswith(
        "film."
    )  # what the default would do
    served = serve(job.model_dir, {"inputs": PROBE})  # code/inference.py adds the prefix (serving.json)
    assert served["prediction"][0]["summary_text"] == whole
    # Without the module, 4.x images serve it through the toolkit's pipelines, which prepend config.prefix: with
    # HF_TASK=summarization, and without HF_TASK as text2text-generation (inferred from the architecture), the same
    # whole summary under that pipeline's key.
    served = serve(job.model_dir, {"inputs": PROBE}, hf_task="summarization", pipeline=True)
    assert served["prediction"][0]["summary_text"].strip() == whole
    served = serve(job.model_dir, {"inputs": PROBE}, pipeline=True)
    assert served["task"] == "text2text-generation"
    assert served["prediction"][0]["generated_text"].strip() == whole


def test_unknown_columns_fail_with_the_list(tmp_path: Path, source: Path) -> None:
    """The one failure through the toolkit (checked in-process too, in tests/e2e/test_failures.py)."""
    write_rows(
        tmp_path / "train" / "t.csv", [{"chat": r["dialogue"], "tldr": r["summary"]} for r in tiny.dialogues(4)]
    )
    hps = {"task": "summarization", "model_name_or_path": str(tiny.build_seq2seq(tmp_path / "bart"))}
    job = run_toolkit(make_tree(tmp_path, hps, {"train": tmp_path / "train"}, source=source))
    assert_fails(job, r"Cannot tell the text and summary columns of the train data \(columns: \['chat', 'tldr'\]\)")
