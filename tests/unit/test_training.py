"""sm_train/training.py: the loss-scaling check before Trainer is built (whole jobs: tests/e2e/test_distributed.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from sm_train.training import _fix_loss_scaling
from tests import tiny


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    path = tiny.build_encoder(tmp_path_factory.mktemp("encoder"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [{**tokenizer("alice likes red"), "labels": 1}, {**tokenizer("bob"), "labels": 0}]
    return path, tokenizer, Dataset.from_list(rows)


def model(path):  # noqa: ANN001, ANN201
    found = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if "accepts_loss_kwargs" in vars(found):  # a model that declares it is not probed
        pytest.skip("this transformers declares accepts_loss_kwargs for the model")
    return found


@pytest.mark.parametrize("with_collator", [True, False], ids=["task collator", "no collator (a task of your own)"])
def test_a_mean_loss_turns_trainers_scaling_off(classifier, with_collator) -> None:
    path, tokenizer, features = classifier
    found = model(path)
    collator = DataCollatorWithPadding(tokenizer) if with_collator else None
    _fix_loss_scaling(found, features, collator, SimpleNamespace(world_size=2, gradient_accumulation_steps=1))
    assert found.accepts_loss_kwargs is False  # transformers 5: the forward takes the count, and its loss ignores it


def test_one_process_without_accumulation_is_left_alone(classifier) -> None:
    path, tokenizer, features = classifier
    found = model(path)
    _fix_loss_scaling(found, features, None, SimpleNamespace(world_size=1, gradient_accumulation_steps=1))
    assert "accepts_loss_kwargs" not in vars(found)
