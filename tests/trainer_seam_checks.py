"""Checks that transformers still calls each override of sm_train/trainer_seam.py, and that each still does its job,
in short real training loops. Plain functions, without pytest: tests/unit/test_trainer_seam.py runs them on this
transformers, and `python -m tests.trainer_seam_checks DIR` runs them all in another environment (.venv-tf4: 4.57).
The tiny tagger here is also the model of tests/e2e/test_loss_scaling.py."""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator
from transformers.modeling_outputs import TokenClassifierOutput

from sm_train import training
from sm_train.callbacks import NoStepPastTheEnd, SaveOrStop
from sm_train.trainer_seam import EpochSeededLengthGroupedSampler, _save_gathered, seam_class

SeamTrainer = seam_class(Trainer)
LENGTH = 6  # tokens per tagger row


class Tagger(torch.nn.Module):
    """A token classifier whose loss is the batch's mean over its labelled tokens, ignoring num_items_in_batch (as
    BERT's heads in transformers 5), or with `summed` their sum divided by num_items_in_batch, Trainer's count over
    the whole global batch (as causal language models; the mean when no count is given)."""

    def __init__(self, summed: bool, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.summed = summed
        self.embed = torch.nn.Embedding(32, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        logits = self.head(self.embed(input_ids))
        loss = None
        if labels is not None:
            flat = labels.flatten()
            total = torch.nn.functional.cross_entropy(logits.flatten(0, 1), flat, ignore_index=-100, reduction="sum")
            count = num_items_in_batch if self.summed and num_items_in_batch is not None else (flat != -100).sum()
            loss = total / count
        return TokenClassifierOutput(loss=loss, logits=logits)


def tagged(labelled: list[int], seed: int = 0) -> Dataset:
    """Rows of LENGTH tokens, the i-th with labelled[i] labelled tokens (the rest -100)."""
    rng = random.Random(seed)
    ids = [[rng.randrange(1, 32) for _ in range(LENGTH)] for _ in labelled]
    labels = [[rng.randrange(3) if t < count else -100 for t in range(LENGTH)] for count in labelled]
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def token_mean(model: Tagger, data: Dataset) -> float:
    """The loss over all labelled tokens of `data` at once: what one step on it as one batch reports."""
    with torch.no_grad():
        return Tagger.forward(model, **{k: torch.tensor(data[k]) for k in ("input_ids", "labels")}).loss.item()


def arguments(output_dir: Path, **values: Any) -> TrainingArguments:
    """`grouped`: length grouping, as transformers 5 or 4.x names it; `sequential`: in order (4.x: at random)."""
    strategy = "train_sampling_strategy" in TrainingArguments.__dataclass_fields__
    if values.pop("grouped", False):
        values |= {"train_sampling_strategy": "group_by_length"} if strategy else {"group_by_length": True}
    if values.pop("sequential", False) and strategy:
        values["train_sampling_strategy"] = "sequential"
    settings = {"output_dir": str(output_dir), "use_cpu": True, "report_to": [], "disable_tqdm": True, "seed": 0}
    return TrainingArguments(**{**settings, "save_strategy": "no", **values})


class Recorder:
    """A collator that records the row numbers (column idx) of each batch, then pads input_ids and labels."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self.rows += [feature["idx"] for feature in features]
        longest = max(len(feature["input_ids"]) for feature in features)
        pad = {"input_ids": 0, "labels": -100}
        return {k: torch.tensor([f[k] + [v] * (longest - len(f[k])) for f in features]) for k, v in pad.items()}


def uneven(count: int, seed: int) -> Dataset:
    """Rows of 1 to 20 tokens, numbered (idx), in no length order."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, 20) for _ in range(count)]
    ids = [[rng.randrange(1, 32) for _ in range(n)] for n in lengths]
    return Dataset.from_dict({"idx": list(range(count)), "input_ids": ids, "labels": [[1] * n for n in lengths]})


def check_training_batches_come_from_our_sampler(tmp: Path) -> None:
    """_get_train_sampler: the batches trained on are the ones EpochSeededLengthGroupedSampler draws for (seed,
    epoch 0); Trainer's own length grouping draws other ones from the global random state."""
    data, recorder = uneven(300, seed=1), Recorder()
    args = arguments(
        tmp, grouped=True, per_device_train_batch_size=2, max_steps=3, seed=7, remove_unused_columns=False
    )
    SeamTrainer(model=Tagger(False), args=args, train_dataset=data, data_collator=recorder).train()
    expected = list(EpochSeededLengthGroupedSampler(2, [len(ids) for ids in data["input_ids"]], seed=7))
    assert recorder.rows[:6] == expected[:6], (recorder.rows[:6], expected[:6])


def check_evaluation_reads_rows_in_order(tmp: Path) -> None:
    """_get_eval_sampler: with length grouping on, evaluation still reads the rows in the dataset's order."""
    data, recorder = uneven(40, seed=2), Recorder()
    args = arguments(tmp, grouped=True, per_device_eval_batch_size=4, remove_unused_columns=False)
    SeamTrainer(model=Tagger(False), args=args, eval_dataset=data, data_collator=recorder).evaluate()
    assert recorder.rows == list(range(40)), recorder.rows


class LossReader(TrainerCallback):
    """Reads Trainer's loss hand-over, as progress.Progress does."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_loss(self, args: Any, state: Any, tr_loss: Any) -> None:
        assert isinstance(tr_loss, torch.Tensor), tr_loss
        self.steps.append(state.global_step)


def check_the_loss_is_handed_over_after_every_step(tmp: Path) -> None:
    """_maybe_log_save_evaluate: callbacks with on_train_loss get Trainer's loss after each optimizer step (and
    again at the end of the epoch)."""
    reader = LossReader()
    args = arguments(tmp, per_device_train_batch_size=2, max_steps=4)
    SeamTrainer(model=Tagger(False), args=args, train_dataset=tagged([3] * 8), callbacks=[reader]).train()
    assert reader.steps[:4] == [1, 2, 3, 4] and set(reader.steps) == {1, 2, 3, 4}, reader.steps


def check_loss_scaling_follows_the_model(tmp: Path) -> None:
    """model_accepts_loss_kwargs: one step over 8 rows in two accumulated batches of 4 reports the mean over all
    their labelled tokens, for a mean-loss model (scaling turned off, or it would report twice that) and for one that
    divides a summed loss by num_items_in_batch (scaling kept: the batches' token counts differ, 1 + 3 + ... + 6)."""
    for summed, labelled in ((False, [3] * 8), (True, [1, 1, 2, 1, 1, 1, 1, 6])):
        data = tagged(labelled)
        args = arguments(tmp, per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=1)
        trainer = SeamTrainer(model=Tagger(summed), args=args, train_dataset=data, data_collator=default_data_collator)
        assert trainer.model_accepts_loss_kwargs is summed
        reported = trainer.train().metrics["train_loss"]
        expected = token_mean(Tagger(summed), data)
        assert abs(reported - expected) < 1e-5 * max(1.0, expected), (summed, reported, expected)


def encoder(tmp: Path) -> tuple[Any, Any, Dataset]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests import tiny

    path = tmp / "encoder" if (tmp / "encoder").is_dir() else tiny.build_encoder(tmp / "encoder", dropout=0.0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = [{**tokenizer(text), "labels": int(label == "pos")} for text, label in tiny.sentences(16)]
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2), tokenizer, Dataset.from_list(rows)


class NoHub(SeamTrainer):  # type: ignore[misc, valid-type]
    """Records pushes instead of making them (and creates no Hub repository)."""

    pushes = 0

    def init_hf_repo(self, *args: Any, **kwargs: Any) -> None:
        pass

    def push_to_hub(self, *args: Any, **kwargs: Any) -> None:
        NoHub.pushes += 1


def check_the_final_save_writes_the_model_and_pushes_nothing(tmp: Path) -> None:
    """save_model(_internal_call=True) and _save(output_dir, state_dict): the model dir holds the model's own
    weights, config and tokenizer, by either path, and nothing is pushed (push_model pushes later)."""
    model, tokenizer, _ = encoder(tmp)
    args = arguments(tmp / "out", push_to_hub=True, hub_model_id="someone/model", save_on_each_node=True)
    trainer = NoHub(model=model, args=args, processing_class=tokenizer)
    trainer.save_deployable(tmp / "plain")
    _save_gathered(trainer, tmp / "gathered")  # the sharded FSDP path, here on a whole model
    for directory in (tmp / "plain", tmp / "gathered"):
        saved = load_file(str(directory / "model.safetensors"))
        assert all(torch.equal(saved[name], value) for name, value in model.state_dict().items() if name in saved)
        assert set(model.state_dict()) - set(saved) <= {"bert.embeddings.position_ids"}, set(saved)
        assert (directory / "config.json").is_file() and (directory / "tokenizer_config.json").is_file()
    assert NoHub.pushes == 0 and args.save_on_each_node is True
    trainer.save_model(str(tmp / "pushed"))  # the control: without _internal_call, save_model pushes
    assert NoHub.pushes == 1


def check_a_resume_at_the_last_step_loads_the_best_model(tmp: Path) -> None:
    """_load_best_model: resuming from the run's last checkpoint trains nothing and ends with the best checkpoint's
    weights (here the first evaluation's: each later one scores lower), as Trainer's own end of training would."""
    model, tokenizer, data = encoder(tmp)
    evaluations = iter(range(100))
    values = {"num_train_epochs": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2, "eval_strategy": "epoch"}
    values |= {"save_strategy": "epoch", "load_best_model_at_end": True, "metric_for_best_model": "order"}
    args = arguments(tmp / "run", greater_is_better=True, **values)

    def build(model: Any) -> Any:
        return SeamTrainer(
            model=model,
            args=args,
            train_dataset=data,
            eval_dataset=data,
            processing_class=tokenizer,
            compute_metrics=lambda prediction: {"order": -next(evaluations)},
            callbacks=[NoStepPastTheEnd()],
        )

    first = build(model)
    first.train()
    best, last = Path(first.state.best_model_checkpoint), tmp / "run" / f"checkpoint-{first.state.global_step}"
    assert best.name == "checkpoint-4" and last.name == "checkpoint-8", (best, last)
    resumed = build(encoder(tmp)[0])
    training.train(resumed, str(last), SaveOrStop(grace=90))
    weights = {name: value for name, value in resumed.model.state_dict().items() if "position_ids" not in name}
    assert resumed.state.global_step == 8
    assert all(torch.equal(weights[k], v) for k, v in load_file(str(best / "model.safetensors")).items())
    assert not all(torch.equal(weights[k], v) for k, v in load_file(str(last / "model.safetensors")).items())


CHECKS: list[Callable[[Path], None]] = [
    check_training_batches_come_from_our_sampler,
    check_evaluation_reads_rows_in_order,
    check_the_loss_is_handed_over_after_every_step,
    check_loss_scaling_follows_the_model,
    check_the_final_save_writes_the_model_and_pushes_nothing,
    check_a_resume_at_the_last_step_loads_the_best_model,
]


if (
    __name__ == "__main__"
):  # every check, each in a folder of its own: "ok <name>" per check, exit 1 at the first failure
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    for check in CHECKS:
        check(base / check.__name__)
        print("ok", check.__name__, flush=True)
