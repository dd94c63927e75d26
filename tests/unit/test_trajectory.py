"""trajectory.py: what a run is (its identity) and the same-run comparison on resume."""

from sm_train import trajectory

RUN = {"task": "text-classification", "train data": "aa", "tokenizer": "t1", "learning_rate": 5e-05,
       "max_steps": 40, "num_train_epochs": 3.0, "seed": 42, "labels": ["neg", "pos"]}  # fmt: skip


def test_a_changed_trajectory_setting_is_named_old_to_new() -> None:
    changed = trajectory.differences(RUN, {**RUN, "learning_rate": 0.01, "train data": "bb", "labels": ["a", "b"]})
    assert changed == [
        'labels: ["neg", "pos"] -> ["a", "b"]',
        "learning_rate: 5e-05 -> 0.01",
        "train data: its content changed",
    ]


def test_extending_a_run_is_no_change_and_shortening_is() -> None:
    assert trajectory.differences(RUN, {**RUN, "max_steps": 80}) == []
    assert trajectory.differences(RUN, {**RUN, "max_steps": 20}) == [
        "max_steps: 40 -> 20 (may be raised, not lowered)"
    ]
    # With max_steps deciding the length in both runs, the epoch count does not matter.
    assert trajectory.differences(RUN, {**RUN, "num_train_epochs": 1.0}) == []
    # A setting only one side knows (another transformers version) is not compared.
    assert trajectory.differences(RUN, {**RUN, "use_cache": True}) == []


def test_observing_settings_are_free_and_everything_else_counts() -> None:
    class Cfg:
        from dataclasses import dataclass

        @dataclass
        class Job:
            resume: str = "auto"
            save_every_minutes: float | None = None

        @dataclass
        class TaskArgs:
            max_seq_length: int = 128
            n_best_size: int = 20

        class Training:
            def __init__(self, **values: object) -> None:
                self.values = values

            def to_dict(self) -> dict:
                return self.values

        class task_cls:  # noqa: N801
            name = "text-classification"

    def run_of(training: dict, **job) -> dict:
        cfg = Cfg()
        cfg.job, cfg.task_args, cfg.training_args = Cfg.Job(**job), Cfg.TaskArgs(), Cfg.Training(**training)
        return trajectory.identity(cfg, "m", "t", {"train": "d"}, {"labels": ["a"]})

    base = {"learning_rate": 1e-4, "logging_steps": 10, "save_steps": 5, "hub_token": "secret", "optim": "adamw"}
    old = run_of(base)
    assert "hub_token" not in old and "logging_steps" not in old and old["max_seq_length"] == 128
    observed = run_of({**base, "logging_steps": 1, "save_steps": 2}, resume="auto", save_every_minutes=5)
    assert trajectory.differences(old, observed) == []
    assert trajectory.differences(old, run_of({**base, "optim": "sgd"})) == ["optim: adamw -> sgd"]
