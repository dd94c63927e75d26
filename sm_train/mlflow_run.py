"""report_to=mlflow: the job's one MLflow run, started (or continued by a restarted attempt) before training and
ended after the job's last log (tracking.reporting), so the final evaluation and the test set's metrics land in it;
the managed-MLflow checks made at parse time. mlflow is imported only when a job reports to it."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from sm_train import files
from sm_train.env import SageMakerEnv
from sm_train.errors import ConfigError, Interrupted
from sm_train.redact import redact_mapping

if TYPE_CHECKING:
    from sm_train.config import Config

logger = logging.getLogger(__name__)

RUN_RECORD = "sm_train_mlflow_run.json"  # in the checkpoint dir: the run a restarted attempt continues
# SageMaker managed MLflow: a tracking server's or an MLflow app's ARN, which only the sagemaker-mlflow plugin reads.
MANAGED_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:(mlflow-tracking-server|mlflow-app)/\S+")
_METRIC_KEY = re.compile(r"[^0-9A-Za-z_\-. :/]")  # characters MLflow refuses in a metric name (as transformers does)


def check_mlflow(variables: Mapping[str, str]) -> None:
    """At parse time, before data or model load: a managed MLflow ARN needs its plugin, MLFLOW_TAGS is JSON."""
    uri = variables.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("arn:"):
        if not MANAGED_ARN.fullmatch(uri):
            raise ConfigError(
                f"MLFLOW_TRACKING_URI={uri} is not a SageMaker managed MLflow ARN: use the tracking server's ARN "
                "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>) or the MLflow app's "
                "(...:mlflow-app/<id>), as the SageMaker console shows it."
            )
        if importlib.util.find_spec("sagemaker_mlflow") is None:
            raise ConfigError(
                f"report_to=mlflow with MLFLOW_TRACKING_URI={uri} (SageMaker managed MLflow) needs the "
                "sagemaker-mlflow package, which is not installed: add sagemaker-mlflow to requirements.txt in "
                "source_dir (the job installs it before training), or point MLFLOW_TRACKING_URI (the estimator's "
                "environment) at another tracking server."
            )
    try:
        tags = json.loads(variables.get("MLFLOW_TAGS", "{}"))
    except ValueError:
        tags = None
    if not isinstance(tags, dict):
        raise ConfigError(
            'MLFLOW_TAGS (the estimator\'s environment) must hold a JSON object of tags, e.g. {"team": "nlp"}.'
        )


def allow_file_store_for(uri: str | None) -> None:
    """A tracking URI that names a local folder (file:..., a path): MLflow 3 refuses its file store unless
    MLFLOW_ALLOW_FILE_STORE is set (it keeps it in maintenance mode); the job was pointed there, so it opts in, for
    this process, unless that variable says otherwise."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    local = uri is not None and (uri.startswith("file:") or "://" not in uri and not uri.startswith("arn:"))
    if local and not MLFLOW_ALLOW_FILE_STORE.is_set():
        MLFLOW_ALLOW_FILE_STORE.set(True)
        logger.info("MLflow: the file store at %s (MLFLOW_ALLOW_FILE_STORE=false refuses it)", uri)


class MlflowRun(TrainerCallback):
    """The job's one MLflow run: every log Trainer makes (training steps, each evaluation, the final one, the test
    set's) at its global step."""

    def __init__(self, cfg: Config, env: SageMakerEnv) -> None:
        self.cfg, self.env, self.variables = cfg, env, env.tracking
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, resume: str | None) -> None:
        """Continue this job's run (a restarted attempt's, MLFLOW_RUN_ID), else create one; parameters and tags."""
        import mlflow
        from mlflow.entities import RunTag

        uri = self.variables.get("MLFLOW_TRACKING_URI")
        if uri is None and self.env.in_sagemaker:
            logger.warning("report_to=mlflow without MLFLOW_TRACKING_URI: the run is kept only inside the container")
        allow_file_store_for(uri)
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        record = Path(self.cfg.training_args.output_dir) / RUN_RECORD
        self.run_id = self._continued(_read(record), resume, uri)
        if self.run_id:
            self.client.update_run(self.run_id, status="RUNNING")
            logger.info("MLflow: continuing run %s", self.run_id)
        else:
            run = self.client.create_run(self._experiment(), run_name=self._run_name())
            self.run_id = run.info.run_id
            logger.info("MLflow: run %s in experiment %s", self.run_id, run.info.experiment_id)
        if self.cfg.saves_checkpoints:
            files.write_atomically(record, {"run_id": self.run_id, "tracking_uri": uri, "job_name": self.env.job_name})
        self._log_params(_params(self.cfg))
        tags = {"sm_train.task": self.cfg.task_cls.name, "sagemaker.job_name": self.env.job_name}
        tags |= {"sm_train.resumed_from": resume, **json.loads(self.variables.get("MLFLOW_TAGS", "{}"))}
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])

    def _continued(self, record: dict[str, Any], resume: str | None, uri: str | None) -> str | None:
        """MLFLOW_RUN_ID; else the recorded run when this attempt continues it (it resumes a checkpoint, or is the same
        SageMaker job restarted) on the same server, and the run still exists."""
        if self.variables.get("MLFLOW_RUN_ID"):
            return self.variables["MLFLOW_RUN_ID"]
        same_job = self.env.job_name is not None and record.get("job_name") == self.env.job_name
        if not record.get("run_id") or record.get("tracking_uri") != uri or not (resume or same_job):
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(record["run_id"])
        except MlflowException as error:
            logger.warning("MLflow: the recorded run %s is not on the server (%s): a new run", record["run_id"], error)
            return None
        return run.info.run_id if run.info.lifecycle_stage == "active" else None

    def _experiment(self) -> str | None:
        """MLFLOW_EXPERIMENT_NAME (created when missing), else MLFLOW_EXPERIMENT_ID, else MLflow's default one."""
        name = self.variables.get("MLFLOW_EXPERIMENT_NAME")
        if not name:
            return self.variables.get("MLFLOW_EXPERIMENT_ID", "0")
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found else self.client.create_experiment(name)

    def _run_name(self) -> str | None:
        """MLFLOW_RUN_NAME, else run_name when given, else the SageMaker job's name (else MLflow makes one up)."""
        given = self.cfg.training_args.run_name if "run_name" in self.cfg.explicit else None
        return self.variables.get("MLFLOW_RUN_NAME") or given or self.env.job_name

    def _log_params(self, params: dict[str, str]) -> None:
        """Parameters the run does not have yet: MLflow refuses to change a logged one, and a restarted attempt may
        change a setting that only observes the run (trajectory.FREE: logging_steps, a raised max_steps)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        changed = sorted(name for name, value in params.items() if logged.get(name, value) != value)
        if changed:
            logger.info("MLflow keeps the run's first %s (it never changes a parameter)", ", ".join(changed))
        new = [Param(name, value) for name, value in params.items() if name not in logged]
        for i in range(0, len(new), 100):  # MLflow's limit per call
            self.client.log_batch(self.run_id, params=new[i : i + 100])

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.run_id is None or not state.is_world_process_zero:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(_METRIC_KEY.sub("_", name), float(value), now, state.global_step)
            for name, value in (logs or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, error: BaseException | None) -> None:
        """The run's end: FINISHED, KILLED (a signal stopped the attempt: a restart continues it) or FAILED; the model
        dir logged as artifacts first when HF_MLFLOW_LOG_ARTIFACTS asks."""
        if self.run_id is None:
            return
        if error is None and self.variables.get("HF_MLFLOW_LOG_ARTIFACTS", "").lower() in ("1", "true", "yes", "on"):
            self.client.log_artifacts(self.run_id, str(self.env.model_dir), artifact_path="model")
        status = "FINISHED" if error is None else "KILLED" if isinstance(error, Interrupted) else "FAILED"
        self.client.set_terminated(self.run_id, status)


def _read(record: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(record.read_text())
        return found if isinstance(found, dict) else {}
    return {}


def _params(cfg: Config) -> dict[str, str]:
    """The resolved settings (job, task, training arguments) as MLflow parameters, secrets shown as ***. logging_dir
    is left out: transformers 4.x fills it with the time, and the job reads tensorboard_dir."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    values = {"task": cfg.task_cls.name, **dataclasses.asdict(cfg.job), **dataclasses.asdict(cfg.task_args)}
    values |= cfg.training_args.to_dict()
    values.pop("logging_dir", None)
    args = cfg.training_args  # its to_dict() writes "<HUB_TOKEN>" for a token that is not set: left out too
    shown = {
        name: value if isinstance(value, str) else json.dumps(value, default=str)
        for name, value in redact_mapping(values).items()
        if value is not None and getattr(args, name, value) is not None
    }
    return {name: value[:MAX_PARAM_VAL_LENGTH] for name, value in shown.items()}
