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
