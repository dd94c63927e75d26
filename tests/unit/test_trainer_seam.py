"""trainer_seam.py: transformers still calls every override, and each still does its job, on the transformers of this
environment (5.x) and on 4.57 (.venv-tf4); the loss-scaling decision goes both ways (whole trainings in two processes
and with accumulation: tests/e2e/test_loss_scaling.py); nothing in the package assigns to a Trainer's attributes or
reaches into Trainer's private names outside the seam."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Seq2SeqTrainer,
    Trainer,
)

from sm_train.trainer_seam import TrainerSeam, loss_is_a_mean, seam_class
from tests import tiny
from tests.e2e.conftest import TF4_PYTHON
from tests.jobs import REPO, job_env
from tests.trainer_seam_checks import CHECKS, Tagger, arguments, tagged


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_transformers_still_calls_the_seam(check, tmp_path: Path) -> None:
    check(tmp_path)


@pytest.mark.external
def test_transformers_4_still_calls_the_seam(tmp_path: Path) -> None:
    env = job_env(tmp_path) | {"PYTHONPATH": f"{REPO}:{REPO / 'tests' / 'netguard'}"}
    command = [str(TF4_PYTHON), "-m", "tests.trainer_seam_checks", str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert re.findall(r"^ok (\w+)$", done.stdout, re.M) == [check.__name__ for check in CHECKS]


def test_each_task_class_gets_the_seam_first_once() -> None:
    for base in (Trainer, Seq2SeqTrainer):
        built = seam_class(base)
        assert built is seam_class(base) and built.__name__ == base.__name__
        assert built.__mro__[1:3] == (TrainerSeam, base)
        assert built._get_train_sampler is TrainerSeam._get_train_sampler
    assert seam_class(seam_class(Trainer)) is seam_class(Trainer)


PRIVATE = re.compile(
    r"_get_(?:train|eval)_sampler|\._save\(|_load_best_model|_internal_call|_maybe_log_save_evaluate|accepts_loss_kwargs"
)


def test_trainers_private_surface_is_used_in_the_seam_only() -> None:
    package = REPO / "sm_train"
    outside = {
        path.name: sorted(set(PRIVATE.findall(path.read_text())))
        for path in package.rglob("*.py")
        if path.name != "trainer_seam.py" and PRIVATE.search(path.read_text())
    }
    assert not outside, outside
    patched = [
        f"{path.name}: {line.strip()}"
        for path in package.rglob("*.py")
        for line in path.read_text().splitlines()
        if re.search(r"\btrainer\.\w+(\.\w+)* =[^=]|setattr\(\s*trainer\b", line)
    ]
    assert not patched, patched


# --- the loss-scaling decision -------------------------------------------------------------------------------------


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


TWO_PROCESSES = SimpleNamespace(world_size=2, gradient_accumulation_steps=1)


@pytest.mark.parametrize("with_collator", [True, False], ids=["task collator", "no collator (a task of your own)"])
def test_a_mean_loss_turns_trainers_scaling_off(classifier, with_collator, tmp_path) -> None:
    path, tokenizer, features = classifier
    found = model(path)
    collator = DataCollatorWithPadding(tokenizer) if with_collator else None
    # transformers 5: the forward takes the count, and its loss ignores it
    assert loss_is_a_mean(found, features, collator, TWO_PROCESSES)
    args = arguments(tmp_path, gradient_accumulation_steps=2)
    trainer = seam_class(Trainer)(model=found, args=args, train_dataset=features, data_collator=collator)
    assert trainer.model_accepts_loss_kwargs is False
    assert "accepts_loss_kwargs" not in vars(found)  # decided in the Trainer; the model is left as it was


def test_one_process_without_accumulation_is_left_alone(classifier, tmp_path) -> None:
    path, tokenizer, features = classifier
    found = model(path)
    assert not loss_is_a_mean(found, features, None, SimpleNamespace(world_size=1, gradient_accumulation_steps=1))
    trainer = seam_class(Trainer)(model=found, args=arguments(tmp_path), train_dataset=features)
    assert trainer.model_accepts_loss_kwargs is True  # Trainer's own decision (the forward takes **kwargs)
    assert "accepts_loss_kwargs" not in vars(found)


@pytest.mark.parametrize("layout", [TWO_PROCESSES, SimpleNamespace(world_size=1, gradient_accumulation_steps=4)])
@pytest.mark.parametrize("summed", [False, True], ids=["mean loss", "summed loss / num_items_in_batch"])
def test_the_decision_goes_both_ways(layout, summed, tmp_path) -> None:
    """Models that declare nothing, on any transformers: two forwards on one row tell the kinds apart, and Trainer
    gets the answer."""
    rows = tagged([2, 3])
    assert loss_is_a_mean(Tagger(summed), rows, None, layout) is not summed
    args = arguments(tmp_path, gradient_accumulation_steps=2)
    assert seam_class(Trainer)(model=Tagger(summed), args=args, train_dataset=rows).model_accepts_loss_kwargs is summed
