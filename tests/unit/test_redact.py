"""redact.py: which settings are secrets, and scrubbing them from text and mappings."""


def test_boolean_settings_with_secret_like_names_are_not_secrets() -> None:
    from sm_train.redact import redact_mapping, scrub, secret_values

    pairs = [("average_tokens_across_devices", "True"), ("include_num_input_tokens_seen", True),
             ("hub_token", "hf_SECRET123"), ("db_password", 20240101)]  # fmt: skip
    assert secret_values(pairs) == ["hf_SECRET123", "20240101"]
    assert scrub("True: token hf_SECRET123", secret_values(pairs)) == "True: token ***"
    assert redact_mapping(dict(pairs)) == {**dict(pairs), "hub_token": "***", "db_password": "***"}
