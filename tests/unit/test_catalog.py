"""catalog.py: the light copy of what each shipped task declares is the registry's, and the light commands import
nothing heavy."""

import subprocess
import sys

from sm_train import catalog
from sm_train.tasks import TASKS
from tests.jobs import REPO


def test_the_catalog_is_what_every_registered_task_declares() -> None:
    assert list(catalog.ARGS) == list(TASKS) == list(catalog.METRIC_NAMES)
    for name, task in TASKS.items():
        assert task.Args is catalog.ARGS[name] is catalog.task_args(name)
        assert tuple(task.metric_names) == catalog.METRIC_NAMES[name] == catalog.metric_names(name)


def test_a_task_of_your_own_is_imported() -> None:
    name = "sm_train.tasks.summarization:Summarization"
    assert catalog.metric_names(name) == catalog.METRIC_NAMES["summarization"]
    assert catalog.task_args(name) is catalog.SummarizationArgs


def test_the_light_commands_import_nothing_heavy() -> None:
    """metric-definitions and hyperparameters run in a notebook with only the SDK: no torch, transformers, datasets
    or numpy is imported (tests/e2e/test_light_commands.py runs them where none is installed)."""
    code = (
        "import contextlib, io, sys\n"
        "from sm_train.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['metric-definitions', '--task', 'question-answering']) == 0\n"
        "    assert main(['hyperparameters']) == 0\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets', 'numpy'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_problem_types_are_the_ones_transformers_configs_take() -> None:
    """problem_type reaches from_pretrained as is (the model's loss and config.json follow it): every value but auto
    is one transformers accepts, and the hyperparameter refuses others before anything loads."""
    import pytest
    from transformers import BertConfig

    from sm_train.errors import ConfigError

    assert catalog.PROBLEM_TYPES[0] == "auto"
    for problem in catalog.PROBLEM_TYPES[1:]:
        assert BertConfig(problem_type=problem).problem_type == problem
        assert catalog.TextClassificationArgs(problem_type=problem).problem_type == problem
    with pytest.raises(ConfigError, match=r"problem_type='multilabel' is not one of auto, single_label_classific"):
        catalog.TextClassificationArgs(problem_type="multilabel")
