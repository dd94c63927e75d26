"""The loss-scaling decision (trainer_seam.py) in whole trainings, both ways: a model whose loss is a per-batch mean
gets Trainer's scaling off, a model that divides a summed loss by num_items_in_batch keeps it; either way, two
processes (gloo on the CPU) and gradient accumulation end at the weights of one process with the global batch.

Tolerance: 1e-5 (absolute, on weights of order 1 after 4 SGD steps at learning rate 0.5), float summation order
aside; the opposite decision moves them by far more (the control run below)."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import default_data_collator

from tests.trainer_seam_checks import SeamTrainer, Tagger, arguments, tagged

pytestmark = pytest.mark.slow  # two processes started with spawn

TOLERANCE = 1e-5
GLOBAL_BATCH, STEPS = 8, 4
# A mean-loss model matches the global batch only when every batch has as many labelled tokens (a mean of means
# is the global mean then); a summed loss divided by Trainer's count matches it whatever the counts.
LABELLED = {False: [3] * 32, True: random.Random(3).choices(range(1, 7), k=32)}
KIND = {False: "mean loss", True: "summed loss / num_items_in_batch"}


class OppositeDecision(SeamTrainer):  # type: ignore[misc, valid-type]
    """The control: the seam's decision reversed, as a wrong probe would leave it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = not self.model_accepts_loss_kwargs


def train(output_dir: Path, summed: bool, batch: int, accumulation: int, kind: type = SeamTrainer) -> dict[str, Any]:
    """STEPS optimizer steps of plain SGD over the rows in order; the weights, and the seam's decision."""
    values = {"learning_rate": 0.5, "optim": "sgd", "max_grad_norm": 0, "lr_scheduler_type": "constant"}
    values["ddp_find_unused_parameters"] = False  # every parameter takes part
    args = arguments(
        output_dir,
        sequential=True,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=STEPS,
        **values,
    )
    data = tagged(LABELLED[summed])
    trainer = kind(model=Tagger(summed), args=args, train_dataset=data, data_collator=default_data_collator)
    trainer.train()
    weights = {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}
    return {"weights": weights, "scaling": trainer.model_accepts_loss_kwargs}


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[name] - b[name]).abs().max().item() for name in a)


def _process(rank: int, port: int, folder: Path) -> None:
    """One of two processes: each model trained with 4 rows per process, then 2 rows and accumulation 2."""
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
        | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    try:
        for summed in (False, True):
            for batch, accumulation in ((GLOBAL_BATCH // 2, 1), (GLOBAL_BATCH // 4, 2)):
                result = train(folder / f"run-{rank}", summed, batch, accumulation)
                if rank == 0:
                    torch.save(result, folder / f"{int(summed)}-{batch}x{accumulation}.pt")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # gloo's threads would abort the exit


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("two-processes")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    processes = [context.Process(target=_process, args=(rank, port, folder)) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0, 0]
    return folder


@pytest.mark.parametrize("summed", [False, True], ids=list(KIND.values()))
def test_processes_and_accumulation_train_as_one_global_batch(summed, tmp_path, two_processes) -> None:
    reference = train(tmp_path / "one", summed, GLOBAL_BATCH, 1)
    runs = {
        "1 process x 4 rows x accumulation 2": train(tmp_path / "acc", summed, GLOBAL_BATCH // 2, 2),
        "2 processes x 4 rows": torch.load(two_processes / f"{int(summed)}-4x1.pt"),
        "2 processes x 2 rows x accumulation 2": torch.load(two_processes / f"{int(summed)}-2x2.pt"),
    }
    for layout, run in runs.items():
        assert run["scaling"] is summed, (layout, KIND[summed])  # off for a mean loss, kept for a summed one
        worst = difference(run["weights"], reference["weights"])
        assert worst < TOLERANCE, f"{KIND[summed]}, {layout}: weights differ by up to {worst}"
    control = train(tmp_path / "control", summed, GLOBAL_BATCH // 2, 2, kind=OppositeDecision)
    assert difference(control["weights"], reference["weights"]) > 100 * TOLERANCE  # the test can fail
