"""Failure reasons: the first line of /opt/ml/output/failure for an error, saying what went wrong, where, and how to
fix it. UserErrors carry their own; here are the ones other libraries raise."""

from __future__ import annotations

import re

from sm_train.errors import Interrupted, UserError


def failure_reason(error: BaseException) -> str:
    """The first line says what went wrong, where, and how to fix it."""
    return one_stop(_reason(error))


def clause(message: object) -> str:
    """Another library's message inside a sentence of ours: without its final period, which ours would double."""
    text = str(message).strip()
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


# A sentence's period doubled where a message that ends in one is embedded before ours ("variable.. Use",
# "variable. . Use") after a word, quote or bracket; an ellipsis, a path's ".." and a quoted '..' are left alone.
_DOUBLED_STOP = re.compile(r"(?<=[\w'\"`)\]])\. ?\.(?=\s|$)")


def one_stop(reason: str) -> str:
    """A reason with each sentence ending in one period, whichever module embedded another library's message."""
    return _DOUBLED_STOP.sub(".", reason)


def _reason(error: BaseException) -> str:
    """The reason as each kind of error words it; failure_reason makes its periods single."""
    if isinstance(error, UserError | Interrupted):
        return str(error)
    name = type(error).__name__
    if isinstance(error, MemoryError) or "OutOfMemoryError" in name:
        return (
            f"Out of memory ({name}: {error}). Lower per_device_train_batch_size / per_device_eval_batch_size or "
            "max_seq_length, raise gradient_accumulation_steps, or use a larger instance."
        )
    if isinstance(error, ImportError):
        return (
            f"Missing or incompatible package: {clause(error)}. Check requirements.txt against the container's "
            "packages."
        )
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted (SIGINT) before the job finished."
    return (
        _service_reason(error, name)
        or f"{name}: {error} (unexpected error inside sm_train; the full traceback is in the job log)"
    )


def _service_reason(error: BaseException, name: str) -> str | None:
    """User problems that the checks before training cannot always see: remote code, the Hub, the
    network, report_to integrations."""
    if isinstance(error, ValueError) and "trust_remote_code" in str(error):
        return (
            f"The model needs Python code from its own repository, which the job did not allow ({name}: "
            f"{str(error).splitlines()[0]}). Set trust_remote_code=true if you trust that code."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if _is_hub_error(error) and status in (401, 403):
        return (
            f"The Hugging Face Hub refused access ({status}: {error}). The token is missing, invalid, or may not "
            "read this model or write to hub_model_id: set HF_TOKEN in the estimator's environment (or hub_token) "
            "to a token with that access, or set push_to_hub=false."
        )
    if _is_hub_error(error) and "LocalTokenNotFound" in name:
        return (
            f"The job needs a Hugging Face token and has none ({error}): set HF_TOKEN in the estimator's environment "
            "(or hub_token), or set push_to_hub=false."
        )
    if _is_hub_error(error) and "Offline" in name:
        return (
            f"The job needs the Hugging Face Hub, but HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set ({error}): "
            "unset it, or use a 'model' channel and local data and set push_to_hub=false."
        )
    if _is_network_error(error):
        return (
            f"Could not reach the network ({name}: {error}). A Hub model id, dataset_name, push_to_hub or a "
            "report_to service need internet access, which a job with network isolation or in a VPC without a NAT "
            "gateway lacks: use a 'model' channel and local data, or give the job outbound access."
        )
    missing = re.search(r"(\w+)Callback requires (\S+) to be installed", str(error))
    if missing:
        return (
            f"report_to needs the {missing[2]} package, which is not installed ({error}): add it to requirements.txt "
            "in source_dir, or leave it out of report_to."
        )
    integration = _INTEGRATION_MODULES.get(type(error).__module__.split(".")[0])
    if integration:
        return (
            f"report_to={integration} failed ({name}: {error}). {_INTEGRATION_REMEDIES.get(integration, '')}"
            f"Set that service's credentials in the estimator's environment, or leave {integration} out of "
            "report_to."
        )
    return None


# The top-level module of an exception -> the report_to integration that raised it.
_INTEGRATION_MODULES = {
    "wandb": "wandb",
    "mlflow": "mlflow",
    "sagemaker_mlflow": "mlflow",  # SageMaker managed MLflow's plugin (its ARN's authentication)
    "comet_ml": "comet_ml",
    "neptune": "neptune",
    "clearml": "clearml",
    "dagshub": "dagshub",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
_INTEGRATION_REMEDIES = {
    "wandb": "A job has no terminal to log in from: set WANDB_API_KEY (or WANDB_MODE=offline). ",
    "mlflow": "Set MLFLOW_TRACKING_URI to a server the job can reach (SageMaker managed MLflow: its ARN, with the "
    "job's role allowed the sagemaker-mlflow actions on it). ",
}
# Network libraries whose errors name the failure in the class: requests, httpx (huggingface_hub 1.x), urllib3.
_NETWORK_MODULES = ("requests", "httpx", "httpx2", "urllib3", "huggingface_hub")
_NETWORK_CLASSES = ("ConnectionError", "ConnectError", "ConnectTimeout", "Timeout", "TimeoutException")


def _is_hub_error(error: BaseException) -> bool:
    return type(error).__module__.startswith("huggingface_hub")


def _is_network_error(error: BaseException) -> bool:
    """A connection failure of a network library, never a local ConnectionError (BrokenPipeError, a c10d store)."""
    if type(error).__module__.split(".")[0] not in _NETWORK_MODULES:
        return False
    return any(cls.__name__ in _NETWORK_CLASSES for cls in type(error).__mro__)
