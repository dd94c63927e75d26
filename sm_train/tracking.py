"""report_to=tensorboard and report_to=mlflow, alike on transformers 4.x and 5.x, written by rank 0 alone:
TensorBoard's event files in the job's TensorBoard folder, never the checkpoint dir; one MLflow run per job, started
(or continued by a restarted attempt) before training and ended after the job's last log, so the final evaluation and
the test set's metrics, logged after on_train_end, land in it too. mlflow is imported only when a job reports to it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.integrations import MLflowCallback, TensorBoardCallback

from sm_train import files
from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError
from sm_train.mlflow_run import MlflowRun

if TYPE_CHECKING:
    from sm_train.config import Config

logger = logging.getLogger(__name__)


def tensorboard_dir(cfg: Config, env: SageMakerEnv) -> Path:
    """Where report_to=tensorboard writes. Never in the checkpoint dir (synced, and restored as checkpoint data) nor
    in the model dir (packed into model.tar.gz)."""
    given, name = cfg.job.tensorboard_dir, "tensorboard_dir"
    if not given and env.tracking.get("TENSORBOARD_LOGGING_DIR"):
        given, name = env.tracking["TENSORBOARD_LOGGING_DIR"], "TENSORBOARD_LOGGING_DIR"
    path = Path(given).expanduser() if given else env.output_dir / "tensorboard"
    for what, directory in (("checkpoint dir", Path(cfg.training_args.output_dir)), ("model dir", env.model_dir)):
        if path.resolve().is_relative_to(directory.resolve()):
            raise ConfigError(
                f"{name}={given} is inside the {what} {directory}, where TensorBoard's event files would be taken "
                f"for the job's own files: leave {name} unset (they then go to {env.output_dir / 'tensorboard'}, "
                "the folder a TensorBoard output config uploads) or choose a folder outside it."
            )
    return path


def check(cfg: Config, env: SageMakerEnv) -> None:
    """Before any data is read: the TensorBoard folder is placed apart and writable (created by rank 0)."""
    if "tensorboard" not in (cfg.training_args.report_to or ()):
        return
    path = tensorboard_dir(cfg, env)
    if cfg.training_args.process_index == 0:
        files.require_writable({"the TensorBoard dir (tensorboard_dir)": path})


class EventFiles(TensorBoardCallback):
    """transformers' TensorBoard callback on the job's folder (transformers 4.x writes to args.logging_dir, 5.x to
    TENSORBOARD_LOGGING_DIR or output_dir/runs), kept open past on_train_end, where transformers closes it: the
    final evaluation and the test set's metrics come later, and would open a writer of its own choosing."""

    def __init__(self, directory: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(tb_writer=SummaryWriter(log_dir=str(directory)))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tb_writer.flush()

    def finish(self, error: BaseException | None) -> None:
        self.tb_writer.close()


def attach(trainer: Any, cfg: Config, env: SageMakerEnv) -> None:
    """report_to's TensorBoard and MLflow callbacks replaced by the job's on rank 0, and removed elsewhere."""
    reports = set(trainer.args.report_to or ())
    for name, kind in (("tensorboard", TensorBoardCallback), ("mlflow", MLflowCallback)):
        if name not in reports:
            continue
        for callback in [c for c in trainer.callback_handler.callbacks if type(c) is kind]:
            trainer.pop_callback(callback)
        if trainer.is_world_process_zero():
            trainer.add_callback(
                EventFiles(tensorboard_dir(cfg, env)) if kind is TensorBoardCallback else MlflowRun(cfg, env)
            )


@contextlib.contextmanager
def reporting(trainer: Any, resume: str | None) -> Iterator[None]:
    """Around training through the job's last log: the MLflow run started (or continued) before and ended after,
    with the job's outcome; TensorBoard's files closed. Recording the end never changes the outcome: a failed job
    reports its own error, a finished one keeps its model and outputs."""
    ours = [c for c in trainer.callback_handler.callbacks if isinstance(c, EventFiles | MlflowRun)]
    for callback in ours:
        if isinstance(callback, MlflowRun):
            callback.start(resume)
    error: BaseException | None = None
    try:
        yield
    except BaseException as raised:
        error = raised
        raise
    finally:
        for callback in ours:
            try:
                callback.finish(error)
            except Exception as failed:  # noqa: BLE001 - logged; the job's outcome stands
                logger.error("%s could not record the job's end: %r", type(callback).__name__, failed)
