"""The one seam between sm_train and transformers' Trainer: every use of Trainer's non-public surface, in one Trainer
subclass mixed into each task's Trainer class (`seam_class`). Each override says why and the transformers versions it
was checked on; nothing is patched on an instance. tests/unit/test_trainer_seam.py fails when a transformers release
stops calling one of them (it runs tests/trainer_seam_checks.py on 5.x, and on 4.57 in .venv-tf4)."""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import Trainer, default_data_collator
from transformers.trainer_pt_utils import LengthGroupedSampler

from sm_train import lora
from sm_train.sharded import is_adapted
from sm_train.tasks.base import token_lengths

logger = logging.getLogger(__name__)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's length-grouped sampler draws from the global random state, which a resumed attempt restores only
    after the epoch's batches were drawn: a restart mid-epoch then trains on other batches than the run it
    continues. Here each epoch's draw depends on (seed, epoch) alone; accelerate passes the epoch on (set_epoch)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


def loss_is_a_mean(model: Any, features: Dataset, collator: Any, args: Any) -> bool:
    """Whether Trainer's loss scaling must be turned off for this model. Trainer multiplies the loss by the number of
    processes and skips the division by gradient_accumulation_steps for a model whose forward takes **kwargs,
    expecting it to divide a summed loss by num_items_in_batch. Models that return a plain mean and ignore that count
    (BERT's classification heads in transformers 5) then train with N times the gradients and report N times the
    loss. Two forwards on one row tell which kind this is (one row needs no padding, so a task without a collator of
    its own is served by default_data_collator). The model is left as it was."""
    if args.world_size == 1 and args.gradient_accumulation_steps == 1:
        return False  # both factors are 1
    forward = inspect.signature(model.forward).parameters
    takes_count = "num_items_in_batch" in forward or any(p.kind == p.VAR_KEYWORD for p in forward.values())
    if not takes_count or getattr(model, "accepts_loss_kwargs", True) is False:
        return False
    named = {name for name, p in forward.items() if p.kind != p.VAR_KEYWORD}
    batch = (collator or default_data_collator)([{k: v for k, v in features[0].items() if k in named}])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mean = model(**batch).loss
            counted = model(**batch, num_items_in_batch=torch.tensor(10**6)).loss
    finally:
        model.train(was_training)
    return bool(torch.allclose(mean, counted))


class TrainerSeam(Trainer):
    """What sm_train needs of Trainer beyond its public API. Built with keyword arguments (training.build_trainer).
    The public methods are what training.py calls; the underscored ones are Trainer's, overridden."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        features = kwargs.get("train_dataset") or kwargs.get("eval_dataset")
        # Probed before Trainer moves the model to its device.
        mean = loss_is_a_mean(kwargs["model"], features, kwargs.get("data_collator"), kwargs["args"])
        super().__init__(*args, **kwargs)
        if mean:
            # Why: off, Trainer divides a mean loss by gradient_accumulation_steps and no longer multiplies it by the
            # number of processes. Checked: transformers 4.57.6, 5.24.0 (training_step and compute_loss read it;
            # __init__ copies model.accepts_loss_kwargs into it: set here instead, the model is left untouched).
            self.model_accepts_loss_kwargs = False
            logger.info("the model's loss is a per-batch mean: Trainer's scaling by num_items_in_batch turned off")

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Why: length groups drawn per (seed, epoch), so a resumed attempt trains on the very same batches.

        The lengths are read from Arrow (Trainer measures the rows one by one: 17 s for 500,000 rows). Checked:
        transformers 4.57.6, 5.24.0 (get_train_dataloader takes its sampler from here; train_dataset None: its own).
        """
        dataset = self.train_dataset if train_dataset is None else train_dataset
        args = self.args
        grouped = getattr(args, "train_sampling_strategy", None) == "group_by_length" or getattr(
            args, "group_by_length", False
        )
        if not grouped or not isinstance(dataset, Dataset) or "input_ids" not in dataset.column_names:
            return super()._get_train_sampler(dataset)
        seed = args.data_seed if args.data_seed is not None else args.seed
        lengths = token_lengths(dataset).tolist()
        return EpochSeededLengthGroupedSampler(args.train_batch_size * args.gradient_accumulation_steps, lengths, seed)

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        """Why: evaluation reads the rows in order; Trainer's length groups would put predictions on other rows.

        The runner already sorted them by length; in several processes accelerate shards them in order. Checked:
        transformers 4.57.6, 5.24.0 (evaluate and predict take their sampler from here).
        """
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _maybe_log_save_evaluate(self, tr_loss: Any, *args: Any, **kwargs: Any) -> Any:
        """Why: Trainer hands its loss sum since its last log here after each optimizer step, and nowhere else.

        Callbacks with an `on_train_loss(args, state, tr_loss)` method (progress.Progress) read it first. Checked:
        transformers 4.57.6, 5.24.0 (called after on_step_end and on_epoch_end; tr_loss first, then grad_norm, model,
        trial, epoch, ...).
        """
        for callback in self.callback_handler.callbacks:
            reader = getattr(callback, "on_train_loss", None)
            if reader is not None:
                reader(self.args, self.state, tr_loss)
        return super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)

    def finish_at_the_last_step(self) -> None:
        """Why: a resume at the run's last step trains nothing, so Trainer's end of training never loads the best one.

        The best checkpoint is loaded here, as there (load_best_model_at_end). Checked: transformers 4.57.6, 5.24.0
        (_load_best_model() reads state.best_model_checkpoint).
        """
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint:
            self._load_best_model()

    def save_deployable(self, directory: Path, merge_adapters: bool = True) -> None:
        """Why: one deployable copy, pushed later: SageMaker merges every host's model dir into one model.tar.gz.

        Every process calls it: Trainer gates the writes and gathers sharded weights. Checked: transformers 4.57.6,
        5.24.0 (save_model's _internal_call=True skips its push to the Hub; training.push_model pushes once the
        outputs are complete). A LoRA model (use_lora): merge_adapters, the Trainer holds the merged plain model from
        here on (save_model writes config.json and model.safetensors, a push sends what the model dir holds);
        otherwise save_model writes the adapter (adapter_config.json, adapter_model.safetensors, the head included)
        and the task's config.json goes beside it (lora.complete_adapter_dir).
        """
        if merge_adapters and is_adapted(self.model):
            self.model = lora.merged(self.model)
        args = self.args  # the Trainer's own copy (training.build_trainer)
        each_node, args.save_on_each_node = args.save_on_each_node, False
        try:
            if _sharded_fsdp(self):
                _save_gathered(self, directory)
            else:
                self.save_model(str(directory), _internal_call=True)
        finally:
            args.save_on_each_node = each_node
        if is_adapted(self.model) and args.should_save:
            lora.complete_adapter_dir(self.model, directory)


def _sharded_fsdp(trainer: Trainer) -> bool:
    fsdp = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    return fsdp is not None and "SHARDED" in str(fsdp.state_dict_type)


def _save_gathered(trainer: Trainer, directory: Path) -> None:
    """Why: with FSDP's sharded state dicts (fsdp_config state_dict_type) save_model writes no weights.

    The whole model is gathered into the first process's memory (every process takes part) and written as save_model
    writes a full state dict. Checked: transformers 4.57.6, 5.24.0 (_save(output_dir, state_dict)).
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(trainer.model_wrapped, options=options)
    if trainer.args.should_save:
        trainer._save(str(directory), state_dict=state)


@functools.cache
def seam_class(base: type[Trainer]) -> type[TrainerSeam]:
    """The task's Trainer class (Trainer, Seq2SeqTrainer or a task's own) with the seam first in its order, built
    once per class; it keeps the task class's name."""
    if issubclass(base, TrainerSeam):
        return base
    return type(base.__name__, (TrainerSeam, base), {"__module__": __name__, "__doc__": base.__doc__})
