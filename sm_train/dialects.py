"""How hyperparameter values arrive, and the tokens HfArgumentParser reads.

Values come typed by json.loads (hyperparameters.json written by SDK v2, SM_HPS), as raw strings (SDK v3, boto3,
the command line), or in the toolkit's argv rendering (True/False, Python-repr lists, k=v,k2=v2 dicts). render()
turns each into `--name value` tokens by the kind of the field it targets; config.py does the typing.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from typing import Any

from sm_train.errors import ConfigError
from sm_train.redact import show

TRUE_STRINGS = ("true", "1", "yes", "y", "t")
FALSE_STRINGS = ("false", "0", "no", "n", "f")
# A value that means "not set": the key is dropped and the default applies. "none" (lower case) is a real value
# for report_to, so only these exact spellings count.
UNSET_STRINGS = ("", "None", "null")
NO_VALUE = "<no value>"  # a value-less --flag on the command line: true for a boolean, an error otherwise


def is_unset(value: Any) -> bool:
    """A value that leaves its field at the default (None, "", "None", "null")."""
    return value is None or (isinstance(value, str) and value.strip() in UNSET_STRINGS)


def is_true(value: Any) -> bool:
    """A boolean hyperparameter's value read as true (a value-less --flag is true)."""
    return value is NO_VALUE or str(value).strip().lower() in TRUE_STRINGS


def normalize_key(key: str) -> str:
    """'--Learning-Rate' -> 'learning_rate'."""
    return key.lstrip("-").strip().replace("-", "_").lower()


def argv_items(argv: Sequence[str]) -> list[tuple[str, Any]]:
    """`--key value [value ...]`, `--key=value`, `-k value` and value-less `--flag` -> (key, str | list | NO_VALUE)."""
    items: list[tuple[str, Any]] = []
    values: list[str] = []
    key: str | None = None

    def flush() -> None:
        if key is not None:
            items.append((key, NO_VALUE if not values else values[0] if len(values) == 1 else list(values)))

    for token in argv:
        is_key = token.startswith("-") and len(token) > 1 and not _is_number(token)
        if is_key:
            flush()
            key, values = token, []
            if "=" in token:
                key, value = token.split("=", 1)
                values.append(value)
        elif key is None:
            raise ConfigError(f"Unexpected argument {token!r}: hyperparameters are passed as --name value.")
        else:
            values.append(token)
    flush()
    return items


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _as_list(key: str, value: Any) -> list[Any]:
    how = 'pass a JSON list such as ["a", "b"]'
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        text = value.strip()
        # JSON, or the toolkit's Python repr of a list: "['a', 'b']".
        for loads in (json.loads, ast.literal_eval):
            try:
                value = loads(text)
                break
            except (ValueError, SyntaxError):
                continue
        else:
            raise ConfigError(f"Hyperparameter '{key}': {text!r} is not a list; {how}.", key=key)
    elif not isinstance(value, list | tuple | dict):
        return [part.strip() for part in str(value).split(",") if part.strip()]
    # A dict would otherwise become one string item ("{'labels': 1}"): label_names would then name no column and
    # evaluation would report neither loss nor metrics.
    if not isinstance(value, list | tuple):
        kind = "a JSON object" if isinstance(value, dict) else f"a single {type(value).__name__}"
        raise ConfigError(f"Hyperparameter '{key}' takes a list, got {kind}; {how}.", key=key)
    if any(isinstance(item, list | tuple | dict) for item in value):
        raise ConfigError(
            f"Hyperparameter '{key}' takes a flat list of values, got nested lists or objects; {how}.", key=key
        )
    return list(value)


def _as_dict_token(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    # A list would otherwise pass on as its repr and be read as a file name.
    if isinstance(value, list | tuple) or (isinstance(value, str) and value.strip().startswith("[")):
        raise ConfigError(
            f"Hyperparameter '{key}' takes a JSON object (or the path of a JSON file), got a list; pass a JSON "
            'object such as {"name": 1}.',
            key=key,
        )
    text = str(value).strip()
    if text.startswith("{"):
        try:
            json.loads(text)
        except ValueError as e:
            raise ConfigError(
                f"Hyperparameter '{key}': {text!r} is not valid JSON ({e}); pass a JSON object.", key=key
            ) from e
        return text
    if "=" in text and not text.endswith(".json"):
        # The toolkit renders a dict on argv as k=v,k2=v2 with str() values.
        parsed = {}
        for pair in text.split(","):
            k, sep, v = pair.partition("=")
            if not sep:
                raise ConfigError(f"Hyperparameter '{key}': cannot read {text!r}; pass a JSON object.", key=key)
            try:
                parsed[k.strip()] = ast.literal_eval(v.strip())
            except (ValueError, SyntaxError):
                parsed[k.strip()] = v.strip()
        return json.dumps(parsed)
    return text  # a path to a JSON file (deepspeed, fsdp_config, ...)


def _scalar_token(key: str, value: Any) -> str:
    if isinstance(value, list | dict):
        raise ConfigError(f"Hyperparameter '{key}' takes a single value, got {show(key, value)!r}.", key=key)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _bool_token(key: str, value: Any) -> str:
    if is_true(value):
        return "true"
    if str(value).strip().lower() in FALSE_STRINGS:
        return "false"
    raise ConfigError(
        f"Hyperparameter '{key}' must be a boolean (true/false/1/0/yes/no), got {show(key, value)!r}.", key=key
    )


def render(key: str, value: Any, kind: str) -> list[str]:
    """The tokens for one hyperparameter; an empty list drops it (the default applies)."""
    if is_unset(value):
        return []
    if kind == "bool":
        return [f"--{key}", _bool_token(key, value)]
    if value is NO_VALUE:
        raise ConfigError(f"Hyperparameter '{key}' needs a value.", key=key)
    if kind == "list":
        items = [_scalar_token(key, v) for v in _as_list(key, value)]
        return [f"--{key}", *items] if items else []
    if kind == "dict":
        return [f"--{key}", _as_dict_token(key, value)]
    return [f"--{key}", _scalar_token(key, value)]
