"""Messages across modules: values starting with '-' reach their field; outside problems are named."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sm_train import cli, models
from sm_train.config import parse, source_items
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.errors import ConfigError

TRUST = "Set trust_remote_code=true if you trust that code."
CPU = DeviceInfo()


def in_sagemaker(tmp_path: Path, hyperparameters: dict[str, Any]):
    """An environment whose hyperparameters.json holds these values encoded as SDK v2 does (json.dumps each)."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    encoded = {"model_name_or_path": json.dumps("m")} | {k: json.dumps(v) for k, v in hyperparameters.items()}
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    return from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})


# --- every value reaches its field, whatever its first character ---------------------------------------


def test_values_that_start_with_a_dash_reach_their_fields(tmp_path: Path) -> None:
    hps = {"task": "question-answering", "null_score_diff_threshold": -1e-05, "run_name": "-exp-1",
           "label_names": ["-start", "end"], "max_steps": -1, "hub_model_id": "-h"}  # fmt: skip
    env = in_sagemaker(tmp_path, hps)
    cfg = parse(source_items(env, []), env, CPU)
    args = cfg.training_args
    assert cfg.task_args.null_score_diff_threshold == -1e-05
    assert args.run_name == "-exp-1" and args.label_names == ["-start", "end"]
    assert args.max_steps == -1 and args.hub_model_id == "-h"  # "-h" is a value, not a help flag


def test_a_negative_learning_rate_gets_its_own_message(tmp_path: Path) -> None:
    env = in_sagemaker(tmp_path, {"learning_rate": -5e-05})
    with pytest.raises(ConfigError, match=r"'learning_rate' must not be negative, got -5e-05"):
        parse(source_items(env, []), env, CPU)


def test_argv_values_that_start_with_a_dash(env) -> None:
    # On a command line "--name -x" is ambiguous, "--name=-x" is not; numbers are always values.
    argv = ["--model_name_or_path", "m", "--run_name=-exp-1", "--max_steps", "-1", "--label_names=-a,b"]
    args = parse(source_items(env, argv), env, CPU).training_args
    assert args.run_name == "-exp-1" and args.max_steps == -1 and args.label_names == ["-a", "b"]
    with pytest.raises(ConfigError, match=r"'learning_rate' must not be negative, got -5e-05"):
        parse(source_items(env, ["--model_name_or_path", "m", "--learning_rate", "-5e-05"]), env, CPU)


# --- problems outside sm_train are named, with their remedy --------------------------------------------


def test_report_to_an_integration_that_is_not_installed(env, monkeypatch) -> None:
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "is_wandb_available", lambda: False)
    with pytest.raises(ConfigError, match=r"report_to=wandb needs the wandb package.*requirements.txt"):
        parse([("model_name_or_path", "m"), ("report_to", "wandb")], env, CPU)
    with pytest.raises(ConfigError, match=r"report_to='wandbb' is not an integration .* one of: .*wandb"):
        parse([("model_name_or_path", "m"), ("report_to", "wandbb")], env, CPU)


@pytest.fixture
def online(monkeypatch):
    """The Hub reachable as far as settings go, and no token anywhere (no HF_TOKEN, no stored token file)."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: os.environ.get("HF_TOKEN"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def test_push_to_hub_is_checked_before_the_model_loads(env, online, monkeypatch) -> None:
    def push(**more: Any):
        return parse([("model_name_or_path", "m"), ("push_to_hub", True), *more.items()], env, CPU)

    with pytest.raises(ConfigError, match=r"push_to_hub=true needs hub_model_id"):
        push()
    with pytest.raises(ConfigError, match=r"needs a Hugging Face token .* set HF_TOKEN"):
        push(hub_model_id="me/model")
    assert push(hub_model_id="me/model", hub_token="hf_x").training_args.push_to_hub
    monkeypatch.setenv("HF_TOKEN", "hf_y")
    assert push(hub_model_id="me/model").training_args.push_to_hub


def test_push_to_hub_in_an_offline_job(env) -> None:
    # The test session itself runs with HF_HUB_OFFLINE=1.
    with pytest.raises(ConfigError, match=r"push_to_hub=true, but the Hugging Face Hub is switched off"):
        parse([("model_name_or_path", "m"), ("push_to_hub", "true"), ("hub_model_id", "me/m")], env, CPU)


def custom_model(directory: Path, auto_map: bool = True) -> Path:
    """A local model dir whose model_type transformers does not know, with or without its own code."""
    directory.mkdir(parents=True)
    config: dict[str, Any] = {"model_type": "sm-train-custom", "hidden_size": 32}
    if auto_map:
        config["auto_map"] = {
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForSequenceClassification": "modeling_custom.CustomModel",
        }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_custom_code_needs_trust_remote_code(tmp_path: Path, env) -> None:
    with pytest.raises(ConfigError) as raised:
        models.load_tokenizer(str(custom_model(tmp_path / "custom")))
    assert str(raised.value).endswith(TRUST)
    assert "configuration_custom.py, modeling_custom.py" in str(raised.value)
    # The setting the message advises is one the job accepts.
    assert parse([("model_name_or_path", "m"), ("trust_remote_code", "true")], env, CPU).job.trust_remote_code


def test_unknown_architecture_without_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model_type 'sm-train-custom', which transformers .* does not know"):
        models.load_tokenizer(str(custom_model(tmp_path / "unknown", auto_map=False)))


def test_hub_models_with_custom_code_get_the_same_reason() -> None:
    """For a Hub id there is no local config.json to read first: transformers' refusal is translated."""
    seen: dict[str, Any] = {}

    class Loader:
        @staticmethod
        def from_pretrained(name: str, **kwargs: Any) -> None:
            seen.update(kwargs)
            raise ValueError("The repository org/model contains custom code ... pass `trust_remote_code=True`.")

    with pytest.raises(ConfigError, match=TRUST):
        models.load(Loader, "org/model", "config")
    assert seen == {"trust_remote_code": False}  # explicit: unset, transformers would wait for an answer on stdin


def test_trust_remote_code_loads_the_models_own_code(tmp_path: Path, tiny_encoder: Path, monkeypatch) -> None:
    import shutil

    from transformers import AutoModelForSequenceClassification, dynamic_module_utils

    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    model = tmp_path / "custom"
    shutil.copytree(tiny_encoder, model)
    config = json.loads((model / "config.json").read_text())
    config |= {"model_type": "sm-train-custom", "architectures": ["CustomModel"],
               "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModelForSequenceClassification": "modeling_custom.CustomModel"}}  # fmt: skip
    (model / "config.json").write_text(json.dumps(config))
    (model / "configuration_custom.py").write_text(
        "from transformers import BertConfig\n\n\nclass CustomConfig(BertConfig):\n"
        "    model_type = 'sm-train-custom'\n"
    )
    (model / "modeling_custom.py").write_text(
        "from transformers import BertForSequenceClassification\n\nfrom .configuration_custom import CustomConfig\n"
        "\n\nclass CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n"
    )
    tokenizer = models.load_tokenizer(str(model), trust_remote_code=True)
    loaded = models.load(AutoModelForSequenceClassification, str(model), "model", trust_remote_code=True)
    assert type(loaded).__name__ == "CustomModel" and tokenizer.model_max_length == 128


class _Fake(Exception):
    pass


def _raised_by(module: str, name: str, message: str, **attributes: Any) -> Exception:
    """An exception of a package that may not be installed here (wandb, requests), as its class reports itself."""
    error = type(name, (_Fake,), {"__module__": module})(message)
    error.__dict__.update(attributes)
    return error


def _hub_errors() -> list[tuple[BaseException, str]]:
    from huggingface_hub.errors import LocalTokenNotFoundError, OfflineModeIsEnabled

    return [
        (LocalTokenNotFoundError("Token is required"), "needs a Hugging Face token and has none"),
        (OfflineModeIsEnabled("Cannot reach https://huggingface.co"), "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set"),
    ]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ValueError("The repository x contains custom code ... pass `trust_remote_code=True`"), TRUST),
        (
            _raised_by("huggingface_hub.errors", "HfHubHTTPError", "401", response=SimpleNamespace(status_code=401)),
            "The Hugging Face Hub refused access (401",
        ),
        (_raised_by("requests.exceptions", "ConnectionError", "Max retries exceeded"), "Could not reach the network"),
        (
            RuntimeError("WandbCallback requires wandb to be installed. Run `pip install wandb`."),
            "report_to needs the wandb package",
        ),
        (
            _raised_by("wandb.errors", "UsageError", "api_key not configured (no-tty)"),
            "report_to=wandb failed (UsageError: api_key not configured (no-tty)). A job has no terminal",
        ),
        *_hub_errors(),
    ],
)
def test_problems_outside_sm_train_are_not_called_internal_errors(error, reason) -> None:
    text = cli.failure_reason(error)
    assert reason in text and "unexpected error inside sm_train" not in text, text


def test_network_errors_are_named_and_local_connection_errors_are_not() -> None:
    unreachable = _raised_by("httpx", "ConnectError", "[Errno -3] Temporary failure in name resolution")
    assert cli.failure_reason(unreachable).startswith("Could not reach the network (ConnectError: [Errno -3]")
    # A builtin ConnectionError subclass from a dataloader worker or a process group is not the network's fault.
    assert "unexpected error inside sm_train" in cli.failure_reason(BrokenPipeError("worker went away"))
