"""Secrets never reach a log line, the failure file, the model card or a written config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
_SECRET_PARTS = ("token", "secret", "password", "key")


def is_secret_key(key: str) -> bool:
    """Keys with a word ending in token, secret, password or key hold secrets (hub_token, hftoken, wandb_api_key):
    not tokenizer_name, a path, nor counts of tokens (max_new_tokens)."""
    words = key.lower().replace("-", "_").split("_")
    return any(word.endswith(_SECRET_PARTS) for word in words)


def _is_secret(key: str, value: Any) -> bool:
    """A secret key with a value; booleans are switches (average_tokens_across_devices=true), not secrets."""
    if not is_secret_key(key) or value is None or isinstance(value, bool):
        return False
    return str(value).strip().lower() not in ("", "true", "false", "none", "null")


def show(key: str, value: Any) -> Any:
    """The value as it may be shown for this key."""
    return MASK if _is_secret(key, value) else value


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: show(k, v) for k, v in values.items()}


def secret_values(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """The string values of secret keys, longest first, to scrub from free text."""
    found = {str(v) for k, v in pairs if _is_secret(k, v) and len(str(v)) >= 4}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
