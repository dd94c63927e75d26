"""sm_train/training.py: Trainer built through the seam around the runner's stopper (the one SaveOrStop of a job), and
a stop before the last step saving, then raising Interrupted (whole jobs: tests/e2e/test_resume.py)."""

from __future__ import annotations

import signal

import pytest
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, Trainer

from sm_train import training
from sm_train.callbacks import SaveOrStop
from sm_train.errors import Interrupted
from sm_train.progress import Progress
from sm_train.trainer_seam import TrainerSeam, seam_class
from tests import tiny
from tests.trainer_seam_checks import Tagger, arguments, tagged


def test_the_trainer_comes_through_the_seam_with_the_runners_stopper(parsed, env, tmp_path) -> None:
    path = tiny.build_encoder(tmp_path / "encoder")
    tokenizer = AutoTokenizer.from_pretrained(path)
    cfg = parsed(gradient_accumulation_steps=2, sigterm_grace_seconds=30)
    task = cfg.task_cls(cfg.task_args, tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    features = Dataset.from_list([{**tokenizer("alice likes red"), "labels": 1}, {**tokenizer("bob"), "labels": 0}])
    stopper = SaveOrStop(cfg.job.sigterm_grace_seconds)
    trainer = training.build_trainer(
        cfg, env, task, model, tokenizer, {"train": features}, None, stopper, pad_multiple=8, evaluations=dict
    )
    assert type(trainer) is seam_class(task.trainer_class) and isinstance(trainer, TrainerSeam)
    registered = trainer.callback_handler.callbacks
    assert [cb for cb in registered if isinstance(cb, SaveOrStop)] == [stopper]  # the runner's, handed in
    assert any(isinstance(cb, Progress) for cb in registered)
    assert not any(isinstance(cb, PrinterCallback) for cb in registered)
    assert trainer.data_collator.pad_to_multiple_of == 8 and trainer.compute_metrics is dict
    assert trainer.args is not cfg.training_args and cfg.training_args.gradient_accumulation_steps == 2


def test_a_stop_before_the_last_step_saves_then_raises_interrupted(tmp_path) -> None:
    args = arguments(tmp_path, per_device_train_batch_size=2, max_steps=4)
    stopper = SaveOrStop(grace=90)
    trainer = seam_class(Trainer)(model=Tagger(False), args=args, train_dataset=tagged([3] * 8), callbacks=[stopper])
    assert stopper.signalled(signal.SIGTERM) and not stopper.signalled(signal.SIGINT)  # the first one counts
    with pytest.raises(Interrupted) as stopped:
        training.train(trainer, None, stopper)
    assert str(stopped.value) == (
        f"Stopped by SIGTERM at step 1: checkpoint-1 is saved in {tmp_path}; a restarted job with the same "
        "checkpoint dir resumes from it."
    )
    assert stopped.value.exit_code == 143 and (tmp_path / "checkpoint-1").is_dir()
