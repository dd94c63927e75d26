"""outputs.py: the resolved configuration records what the job did, with secret values (only) hidden."""

from __future__ import annotations

import pytest

from sm_train.outputs import resolved_config

BOTH = {"train": 24, "eval": 8}


@pytest.mark.parametrize(
    ("values", "sizes", "evaluated"),
    [
        ({}, BOTH, "at the end"),
        ({"eval_strategy": "steps", "eval_steps": 2000000}, BOTH, "every 2000000 steps and at the end"),
        ({"eval_strategy": "steps", "eval_steps": 0.25}, BOTH, "every 25% of the training steps and at the end"),
        ({"eval_strategy": "epoch", "eval_on_start": True}, BOTH, "at the start, every epoch and at the end"),
        ({}, {"train": 24}, False),
        ({"do_train": False}, {"eval": 8}, "once, without training"),
    ],
)
def test_the_record_says_what_ran(env, parsed, values, sizes, evaluated) -> None:
    """Training and evaluation follow the data present (data.select_splits), not do_train/do_eval, and the job
    evaluates at the end whatever eval_strategy says: the record says what happened."""
    cfg = parsed(**values)
    written = resolved_config(cfg, {}, env, None, sizes)
    assert written["ran"] == {"trained": "train" in sizes, "evaluated": evaluated, "rows": sizes}
    training = written["training_args"]
    assert training["do_train"] is ("train" in sizes) and training["do_eval"] is ("eval" in sizes)
    assert training["eval_strategy"] == values.get("eval_strategy", "no")  # the setting, as Trainer used it


def test_a_check_records_what_will_run_and_no_sizes_record_nothing(env, parsed) -> None:
    cfg = parsed()
    planned = resolved_config(cfg, {}, env, sizes=BOTH, planned=True)
    assert planned["will_run"] == {"trains": True, "evaluates": "at the end", "rows": BOTH} and "ran" not in planned
    assert not {"ran", "will_run"} & set(resolved_config(cfg, {}, env))


def test_only_set_secrets_are_hidden(env, parsed) -> None:
    """TrainingArguments.to_dict writes '<HUB_TOKEN>' for every *_token field, set or not: an unset token is
    recorded as unset, a boolean or a value such as 'all' of a non-secret field as it is."""
    cfg = parsed(include_num_input_tokens_seen="true", average_tokens_across_devices="false")
    written = resolved_config(cfg, {}, env, None, BOTH)
    training = written["training_args"]
    assert training["hub_token"] is None and training["average_tokens_across_devices"] is False
    assert training["include_num_input_tokens_seen"] == cfg.training_args.include_num_input_tokens_seen
    assert "***" not in str(written)
    hidden = resolved_config(parsed(hub_token="hf_abcdef123"), {}, env, None, BOTH)
    assert hidden["training_args"]["hub_token"] == "***" and hidden["hyperparameters"]["hub_token"] == "***"
    assert "hf_abcdef123" not in str(hidden)
