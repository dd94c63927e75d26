"""reasons.py: the failure file's first line for errors other libraries raise, one period per sentence."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from huggingface_hub.errors import OfflineModeIsEnabled

from sm_train import models
from sm_train.errors import ConfigError
from sm_train.reasons import clause, failure_reason, one_stop

# What huggingface_hub raises for any Hub request while HF_HUB_OFFLINE is set: a message ending in a period.
OFFLINE = OfflineModeIsEnabled(
    "Cannot reach https://huggingface.co/api/models/org/model: offline mode is enabled. To disable it, please unset "
    "the `HF_HUB_OFFLINE` environment variable."
)


def no_doubled_period(text: str) -> bool:
    return ".." not in text and ". ." not in text


def test_the_offline_hub_reason_has_single_periods() -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OFFLINE

    with pytest.raises(ConfigError) as raised:  # a Hub model id loaded while offline, as a job loads it
        models.load(SimpleNamespace(from_pretrained=offline), "org/model", "model")
    reason = failure_reason(raised.value)
    assert no_doubled_period(reason), reason
    assert "the `HF_HUB_OFFLINE` environment variable. Use a local path, a 'model' channel" in reason
    assert no_doubled_period(failure_reason(OFFLINE)) and "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set" in (
        failure_reason(OFFLINE)
    )


def test_an_embedded_message_loses_its_final_period_only() -> None:
    assert failure_reason(ImportError("cannot import name 'X' from 'y'.")).startswith(
        "Missing or incompatible package: cannot import name 'X' from 'y'. Check requirements.txt"
    )
    assert clause(" Done. ") == "Done" and clause("Wait...") == "Wait..." and clause("no period") == "no period"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("variable.. Use a path.", "variable. Use a path."),
        ("variable. . Use a path.", "variable. Use a path."),
        ("ends in two..", "ends in two."),
        ("'offline-mode'.. Use", "'offline-mode'. Use"),
        ("an ellipsis... and more", "an ellipsis... and more"),
        ("the channel name '..' is refused.", "the channel name '..' is refused."),
        ("--channel train=.. and data/../x ..", "--channel train=.. and data/../x .."),
    ],
)
def test_one_stop_keeps_ellipses_and_paths(given: str, expected: str) -> None:
    assert one_stop(given) == expected
