"""Model, tokenizer and config loading: a local path must hold a saved model (a model archive is unpacked first,
archives.py) and its tokenizer, running a model's own code is an explicit opt-in (trust_remote_code), and the
tokenizer must fit the model: not empty, no more tokens than the model's embeddings, its length limit made real."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import re
import traceback
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer

from sm_train import archives
from sm_train.errors import ConfigError
from sm_train.reasons import clause

logger = logging.getLogger(__name__)

# What transformers builds a tokenizer from: tokenizer.json, or one of these vocabularies ("+": files going together);
# without them it builds a tokenizer of the special tokens alone.
VOCABULARIES = ("vocab.txt", "vocab.json+merges.txt", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model",
                "tokenizer.model", "spm.model", "source.spm", "tekken.json")  # fmt: skip
MIN_WORDS = 4  # fewer tokens than this besides the special ones: an empty tokenizer (a DNA one has A, C, G, T)
_MODEL_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx", ".model",
                   ".spm", "config.json", *archives.SUFFIXES)  # fmt: skip
_MODEL_NAMES = {"tokenizer.json", "special_tokens_map.json", *(n for v in VOCABULARIES for n in v.split("+"))}
_OWN_TOKENIZER = (
    "Save the tokenizer into the model's folder (tokenizer.save_pretrained(folder), as model.save_pretrained), or "
    "set tokenizer_name to the tokenizer's Hub id or local path"
)
_unpacked: dict[str, Path] = {}  # the folder a model archive was unpacked into -> the archive


def check_model_path(name: str | None) -> str:
    """A local model path must be a saved model dir, or an archive of one (the path itself, or the one archive in a
    folder without config.json: unpacked, archives.py); anything else is taken as a Hub id. Returns what to load."""
    if not name:
        raise ConfigError(
            "model_name_or_path is required: pass a Hub model id or a local path, or give the job a 'model' channel."
        )
    if not _looks_local(name):
        return name
    path = Path(name).expanduser()
    archive = archives.find(path)
    if archive is not None:
        path = archives.unpack(archive)
        name = str(path)
        _unpacked[name] = archive
    if not path.is_dir():
        raise ConfigError(f"model_name_or_path={name!r} does not exist; pass a saved model directory or a Hub id.")
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{_described(name)} has no config.json ({_contents(path)}); point it at a directory written by "
            "save_pretrained."
        )
    return name


def _looks_local(name: str) -> bool:
    path = Path(name).expanduser()
    return path.is_absolute() or name.startswith((".", "~")) or path.exists()


def _described(name: str) -> str:
    archive = _unpacked.get(name)
    return f"The model archive {archive} (unpacked into {name})" if archive else f"model_name_or_path={name!r}"


def _contents(path: Path) -> str:
    """What a folder holds as far as a model goes: a subfolder that holds a model, or its model-like files; never a
    listing of unrelated files (model_name_or_path=/etc must not print /etc)."""
    try:
        entries = sorted(path.iterdir())
        models = [p for p in entries if os.path.isfile(p / "config.json")]  # False for an unreadable folder
    except OSError as e:
        return f"it cannot be read: {e.strerror}"
    return f"did you mean {models[0]}?" if models else _model_files(entries)


def _model_files(entries: list[Path]) -> str:
    found = [p.name for p in entries if p.name.endswith(_MODEL_SUFFIXES) or p.name in _MODEL_NAMES]
    return f"found: {', '.join(found[:10])}" if found else "no model files in it"


def _check_tokenizer_files(path: Path, described: str, fix: str) -> None:
    """A local tokenizer folder must hold what transformers builds the tokenizer from; a byte- or character-level
    tokenizer (ByT5, CANINE) named in tokenizer_config.json needs no vocabulary."""
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    if any(all((path / name).is_file() for name in v.split("+")) for v in ("tokenizer.json", *VOCABULARIES)):
        return
    try:
        named = tokenizer_class_from_name(json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"])
        if not set(named.vocab_files_names.values()) - {"tokenizer.json", "tokenizer_config.json"}:
            return
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError):
        pass
    raise ConfigError(
        f"{described} has no tokenizer files ({_model_files(sorted(path.iterdir()))}): transformers needs "
        "tokenizer.json, or tokenizer_config.json with its vocabulary (vocab.txt, vocab.json + merges.txt, "
        f"spiece.model, ...), and without them builds an empty tokenizer that reads every word as unknown. {fix}."
    )


def load(loader: Any, name: str, what: str, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """loader.from_pretrained with a reason for the user's problems. trust_remote_code is always explicit: left
    unset, transformers asks on stdin whether to run a model's code, and a job has no one to answer."""
    try:
        return loader.from_pretrained(name, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, pickle.UnpicklingError) as e:
        refused = _refused_pickle(e, name)
        if refused is not None:
            raise refused from e
        if not isinstance(e, OSError):
            raise
        raise ConfigError(
            f"Could not load the {what} from model_name_or_path={name!r}: {clause(e)}. Use a local path, a 'model' "
            "channel, or a Hub id the job can reach."
        ) from e
    except ValueError as e:
        # The same problems _load_tokenizer finds in a local config.json, for a Hub id.
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


def _refused_pickle(error: BaseException, name: str) -> ConfigError | None:
    """torch's weights_only loading refused a pickled weights file (transformers 5 lets torch's UnpicklingError
    through, 4.x wraps it in an OSError): the reason names the file, which torch's message does not."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    refusal = next((e for e in chain if isinstance(e, pickle.UnpicklingError) and "eights only" in str(e)), None)
    if refusal is None:
        return None
    files = [str(p) for p in sorted(Path(name).glob("*.bin"))] or ["the model's .bin weights file"]
    for frame, _ in (step for link in chain for step in traceback.walk_tb(link.__traceback__)):
        f = frame.f_locals.get("f")  # torch.load(f, ...): the file it was reading
        if frame.f_code.co_name == "load" and frame.f_code.co_filename.endswith("serialization.py") and f:
            files = [os.fspath(f)] if isinstance(f, str | Path) else files
    named = re.search(r"GLOBAL ([\w.]+)", str(refusal))
    return ConfigError(
        f"{', '.join(files[:3])} holds Python objects that PyTorch's safe loading refuses to unpickle"
        f"{f' ({named[1]})' if named else ''}: loading them could run any code. Convert the weights to "
        "safetensors: where you trust the file, load the model and save it with save_pretrained(folder, "
        "safe_serialization=True) (it writes model.safetensors), then use that folder."
    )


def _custom_code_error(name: str, detail: str) -> ConfigError:
    return ConfigError(
        f"model_name_or_path={name!r} is a custom model: it {detail}, which loading it runs. Set "
        "trust_remote_code=true if you trust that code."
    )


def load_tokenizer(model_name: str, trust_remote_code: bool = False, tokenizer_name: str | None = None) -> Any:
    """The model's tokenizer, or tokenizer_name's: a local folder must hold tokenizer files, and the tokenizer must
    not be empty nor hold more tokens than the model's embeddings. Its length limit is made real: many checkpoints
    leave model_max_length unset (1e30), and longer windows than the model's positions crash inside the model.

    A local model's architecture is checked first, before anything loads."""
    _check_architecture(model_name, trust_remote_code)
    source, described, fix = model_name, _described(model_name), _OWN_TOKENIZER
    if tokenizer_name:
        source, described = tokenizer_name, f"tokenizer_name={tokenizer_name!r}"
        fix = "Point tokenizer_name at a folder written by tokenizer.save_pretrained, or at a Hub id"
        if _looks_local(tokenizer_name):
            source = str(Path(tokenizer_name).expanduser())
            if not Path(source).is_dir():
                raise ConfigError(f"{described} does not exist. {fix}.")
    if Path(source).is_dir():  # a Hub id is not checked here: the Hub's own files say what the tokenizer is
        _check_tokenizer_files(Path(source), described, fix)
    config = load(AutoConfig, model_name, "config", trust_remote_code=trust_remote_code)
    tokenizer = load(AutoTokenizer, source, "tokenizer", trust_remote_code=trust_remote_code)
    words = len(tokenizer) - len(set(tokenizer.all_special_ids))
    if words < MIN_WORDS:
        raise ConfigError(
            f"The tokenizer of {described} holds {len(tokenizer)} tokens, {words} of them not special: every word "
            f"would become its unknown token. {fix}."
        )
    rows = _embedding_rows(config)
    if rows is not None and len(tokenizer) > rows:
        raise ConfigError(
            f"The tokenizer of {described} holds {len(tokenizer)} tokens, more than the {rows} token embeddings of "
            f"the model (vocab_size in {model_name}'s config): the first batch with a token id of {rows} or more "
            "would crash training. Use the model's own tokenizer, or add the tokens to the model "
            "(model.resize_token_embeddings(len(tokenizer))) and save_pretrained the model and its tokenizer."
        )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and tokenizer.model_max_length > positions:
        # RoBERTa-style position ids start after the padding index: two fewer usable positions.
        usable = positions - 2 if "roberta" in (config.model_type or "") else positions
        logger.info(
            "tokenizer model_max_length %s set to the model's %d positions", tokenizer.model_max_length, usable
        )
        tokenizer.model_max_length = usable
    return tokenizer


def _embedding_rows(config: Any) -> int | None:
    """The model's token embedding rows: vocab_size, wherever the config keeps it (an encoder-decoder's parts)."""
    parts = [config, getattr(config, "encoder", None), getattr(config, "decoder", None)]
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        parts.append(config.get_text_config())
    sizes = [getattr(part, "vocab_size", None) for part in parts]
    found = [size for size in sizes if isinstance(size, int) and not isinstance(size, bool) and size > 0]
    return min(found) if found else None


def _check_architecture(model_name: str, trust_remote_code: bool) -> None:
    """A local config.json whose model_type transformers does not know: custom code needs trust_remote_code, and
    without code there is nothing to load it with."""
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
