"""Errors the user can fix. Their message is the failure reason: what is wrong, where, and how to fix it."""


class UserError(Exception):
    """A problem with the job's input (hyperparameters, data, model path) rather than a bug."""


class ConfigError(UserError):
    """A hyperparameter is unknown, mistyped or inconsistent."""


class DataError(UserError):
    """A channel, file, column or label is missing or malformed."""


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
