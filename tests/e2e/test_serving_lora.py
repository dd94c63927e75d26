"""Adapter-only model dirs (merge_adapters=false) served by the real SageMaker Hugging Face inference toolkit on
transformers 4.57 (`.venv-tf4`, with peft): its handler service loads code/inference.py, whose model_fn loads the
base model with the adapter, and answers as the PeftModel the job saved (built and saved here on transformers 5.x)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import transformers

from sm_train.serving import inference
from tests.e2e.test_serving import toolkit
from tests.unit.test_serving import TEXTS
from tests.unit.test_serving_lora import DIALOGUES, adapter_only, near, scores

pytestmark = pytest.mark.external


def test_the_toolkit_serves_an_adapter_only_classifier_as_its_peft_model(tmp_path: Path) -> None:
    model_dir, wrapped = adapter_only(tmp_path / "classifier", "text-classification")
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    expected = [scores(wrapped, tokenizer, text) for text in TEXTS]
    served = toolkit(model_dir, {"inputs": TEXTS, "parameters": {"top_k": 3}}, {"inputs": TEXTS})
    assert served["task"] == "text-classification" and served["module"]
    ranked, best = served["responses"]
    assert ranked["status"] == 200 and best["status"] == 200
    assert near([{a["label"]: a["score"] for a in answers} for answers in ranked["body"]], expected)
    assert [a["label"] for a in best["body"]] == [max(e, key=e.get) for e in expected]

    # The endpoint's environment names the base: here a folder shipped inside the model dir, the job's path gone.
    shipped = Path(shutil.copytree(model_dir, tmp_path / "shipped"))
    shutil.copytree(json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"],
                    shipped / "base")  # fmt: skip
    settings = shipped / "code" / "serving.json"
    settings.write_text(json.dumps(json.loads(settings.read_text()) | {"base_model": "/opt/ml/input/data/model"}))
    request = {"inputs": TEXTS, "parameters": {"top_k": 3}}
    (answer,) = toolkit(shipped, request, **{inference.BASE_MODEL: "base"})["responses"]
    assert near(answer["body"], ranked["body"])


def test_the_toolkit_serves_an_adapter_only_summarizer_with_the_jobs_generation_settings(tmp_path: Path) -> None:
    model_dir, wrapped = adapter_only(tmp_path / "summarizer", "summarization")
    served = inference.model_fn(str(model_dir))  # the module on transformers 5.x: the PeftModel's summaries
    expected = inference.predict_fn({"inputs": DIALOGUES}, served._replace(model=wrapped))
    (answer,) = toolkit(model_dir, {"inputs": DIALOGUES})["responses"]
    assert answer == {"status": 200, "body": expected}
