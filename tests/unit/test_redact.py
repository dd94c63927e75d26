"""redact.py: which settings are secrets, and scrubbing them from text and mappings."""


def test_boolean_settings_with_secret_like_names_are_not_secrets() -> None:
    from sm_train.redact import redact_mapping, scrub, secret_values

    pairs = [("average_tokens_across_devices", "True"), ("include_num_input_tokens_seen", True),
             ("hub_token", "hf_SECRET123"), ("db_password", 20240101)]  # fmt: skip
    assert secret_values(pairs) == ["hf_SECRET123", "20240101"]
    assert scrub("True: token hf_SECRET123", secret_values(pairs)) == "True: token ***"
    assert redact_mapping(dict(pairs)) == {**dict(pairs), "hub_token": "***", "db_password": "***"}


def test_a_word_ending_in_a_secret_word_is_a_secret_and_a_tokenizer_is_not() -> None:
    from sm_train.redact import is_secret_key

    for key in ("hub_token", "push_to_hub_token", "hftoken", "wandb_api_key", "apikey", "db-password", "my_secret"):
        assert is_secret_key(key), key
    for key in ("tokenizer_name", "max_new_tokens", "include_num_input_tokens_seen", "keep_columns", "tokenized"):
        assert not is_secret_key(key), key


def test_exactly_these_settings_are_secrets() -> None:
    """Every field a job can set (JobArgs, each task's Args, its TrainingArguments class), against the rule: a new
    transformers field that the rule would hide, or a secret field renamed out of it, fails here."""
    from dataclasses import fields

    from sm_train.job_args import JobArgs
    from sm_train.redact import is_secret_key
    from sm_train.tasks import TASKS

    classes = {
        JobArgs,
        *(task.Args for task in TASKS.values()),
        *(task.training_args_class for task in TASKS.values()),
    }
    names = {f.name for dataclass in classes for f in fields(dataclass)}
    # transformers 4.x still has push_to_hub_token (deprecated); 5.x has hub_token alone.
    assert {name for name in names if is_secret_key(name)} == {"hub_token"} | ({"push_to_hub_token"} & names)


def test_booleans_and_unset_values_are_never_masked() -> None:
    from sm_train.redact import redact_mapping, secret_values, show

    unset = {"hub_token": None, "api_key": "", "push_to_hub_token": "None", "wandb_token": "null"}
    switches = {"my_secret": True, "db_password": False, "average_tokens_across_devices": True}
    kept = {**unset, **switches, "include_num_input_tokens_seen": "all", "eval_strategy": "no"}
    assert redact_mapping(kept) == kept and secret_values(kept.items()) == []
    assert show("hub_token", "hf_abc123") == "***" and show("hub_token", "  ") == "  "
