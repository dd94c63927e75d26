"""Model, tokenizer and config loading: a local path must hold a saved model, running a model's own code is an
explicit opt-in (trust_remote_code), and the tokenizer's length limit is made real."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer

from sm_train.errors import ConfigError

logger = logging.getLogger(__name__)


def check_model_path(name: str | None) -> str:
    """A local model path must be a saved model dir; anything else is taken as a Hub id."""
    if not name:
        raise ConfigError(
            "model_name_or_path is required: pass a Hub model id or a local path, or give the job a 'model' channel."
        )
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise ConfigError(f"model_name_or_path={name!r} does not exist; pass a saved model directory or a Hub id.")
        if not (path / "config.json").is_file():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
            raise ConfigError(
                f"model_name_or_path={name!r} has no config.json (found: {found}); "
                "point it at a directory written by save_pretrained."
            )
    return name


def load(loader: Any, name: str, what: str, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """loader.from_pretrained with a reason for the user's problems. trust_remote_code is always explicit: left
    unset, transformers asks on stdin whether to run a model's code, and a job has no one to answer."""
    try:
        return loader.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
    except OSError as e:
        raise ConfigError(
            f"Could not load the {what} from model_name_or_path={name!r}: {e}. Use a local path, a 'model' channel, "
            "or a Hub id the job can reach."
        ) from e
    except ValueError as e:
        # The same problems _load_tokenizer finds in a local config.json, for a Hub id (#8 item 11).
        message = str(e)
        if "trust_remote_code" in message:
            raise _custom_code_error(name, "ships its own Python code to load it") from e
        if "does not recognize this architecture" in message or "Unrecognized configuration class" in message:
            raise ConfigError(
                f"Cannot build the {what} from model_name_or_path={name!r}: {message.splitlines()[0]} Use a model "
                "of an architecture the installed transformers supports for this task, or a transformers version "
                "that knows it (requirements.txt in source_dir)."
            ) from e
        raise


def _custom_code_error(name: str, detail: str) -> ConfigError:
    return ConfigError(
        f"model_name_or_path={name!r} is a custom model: it {detail}, which loading it runs. Set "
        "trust_remote_code=true if you trust that code."
    )


def load_tokenizer(model_name: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer, with its length limit made real: many checkpoints leave model_max_length unset (1e30), and
    windows longer than the model's position embeddings crash inside the model instead of being truncated.

    A local model's architecture is checked first, before anything loads (#8 item 11)."""
    from transformers import __version__ as transformers_version
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    saved_path = Path(model_name).expanduser() / "config.json"
    try:
        saved = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    except ValueError as e:
        raise ConfigError(
            f"{saved_path} is not valid JSON ({e}); point model_name_or_path at a directory written by "
            "save_pretrained."
        ) from e
    model_type, auto_map = saved.get("model_type"), saved.get("auto_map")
    if isinstance(model_type, str) and model_type not in CONFIG_MAPPING:
        if auto_map and not trust_remote_code:
            # auto_map values: "module.Class", "repo--module.Class", or a [slow, fast] pair of them.
            refs = [
                ref for value in dict(auto_map).values() for ref in (value if isinstance(value, list) else [value])
            ]
            modules = sorted({str(ref).split("--")[-1].split(".")[0] + ".py" for ref in refs if ref})
            detail = (
                f"has model_type {model_type!r}, and its config.json names Python code for it ({', '.join(modules)})"
            )
            raise _custom_code_error(model_name, detail)
        if not auto_map:
            raise ConfigError(
                f"model_name_or_path={model_name!r} has model_type {model_type!r}, which transformers "
                f"{transformers_version} does not know, and its config.json names no code to load it with "
                "(auto_map). Use a model of a supported architecture, or a transformers version that knows it "
                "(requirements.txt in source_dir)."
            )
    config = load(AutoConfig, model_name, "config", trust_remote_code=trust_remote_code)
    tokenizer = load(AutoTokenizer, model_name, "tokenizer", trust_remote_code=trust_remote_code)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and tokenizer.model_max_length > positions:
        # RoBERTa-style position ids start after the padding index: two fewer usable positions.
        usable = positions - 2 if "roberta" in (config.model_type or "") else positions
        logger.info(
            "tokenizer model_max_length %s set to the model's %d positions", tokenizer.model_max_length, usable
        )
        tokenizer.model_max_length = usable
    return tokenizer
