"""docs/architecture.md's import rules ("Rules a change must keep"), checked on the package's own imports: every
`import` and `from ... import` in sm_train, function-level ones too, except those under `if TYPE_CHECKING:` (not run
time). A broken rule is named with the file, the line, the import and the page's words."""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sm_train"
PAGE = ROOT / "docs" / "architecture.md"
WHERE = 'docs/architecture.md, "Rules a change must keep"'
RESTART = frozenset({"checkpoint.py", "sharded.py", "files.py", "cache.py", "claim.py", "trajectory.py"})
TRAINER_API = re.compile(r"[Tt]rainer|TrainingArguments|training_args")  # Trainer*, *TrainingArguments, trainer_utils


@dataclass(frozen=True)
class Import:
    importer: str  # the module's path under sm_train/, as the page names it: "env.py", "tasks/base.py"
    line: int
    imported: str  # an sm_train module's path ("config.py", "tasks/__init__.py"), else the dotted name imported
    ours: bool

    def __str__(self) -> str:
        imported = f"sm_train/{self.imported}" if self.ours else self.imported
        return f"sm_train/{self.importer}:{self.line} imports {imported}"


def _module_of(dotted: str, modules: Collection[str]) -> str:
    """The sm_train module a dotted name is: its file or package, else the nearest one above it (an attribute such
    as `from sm_train import __version__` names sm_train/__init__.py)."""
    parts = dotted.split(".")[1:]
    while parts:
        for candidate in ("/".join(parts) + ".py", "/".join([*parts, "__init__.py"])):
            if candidate in modules:
                return candidate
        parts.pop()
    return "__init__.py"


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, source: str, modules: Collection[str]) -> list[Import]:
    """Every run-time import in one module's source (`module`: its path under sm_train/)."""
    package = ["sm_train", *module.split("/")[:-1]]  # a module's package; __init__.py's is its own folder
    found: list[Import] = []

    def add(dotted: str, line: int, names: Collection[str] = ()) -> None:
        if dotted != "sm_train" and not dotted.startswith("sm_train."):
            outside = [f"{dotted}.{name}" for name in names] or [dotted]
            found.extend(Import(module, line, name, False) for name in outside)
            return
        own = _module_of(dotted, modules)
        # `from sm_train import config` imports the module config.py; any other name comes from the module named.
        targets = {_module_of(f"{dotted}.{name}", modules) if name != "*" else own for name in names} or {own}
        found.extend(Import(module, line, target, True) for target in sorted(targets))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            dotted = ".".join([*base, *([node.module] if node.module else [])])
            add(dotted, node.lineno, [alias.name for alias in node.names])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source, filename=f"sm_train/{module}"))
    return found


def package_imports(root: Path = PACKAGE) -> list[Import]:
    modules = {path.relative_to(root).as_posix() for path in root.rglob("*.py")}
    return [found for module in sorted(modules) for found in imports(module, (root / module).read_text(), modules)]


@dataclass(frozen=True)
class Rule:
    title: str  # the rule's title on the page
    says: str  # the page's words for this part of it; the page must keep saying both
    breaks: Callable[[Import], bool]

    def named(self, found: object) -> str:
        return f'{found}: breaks "{self.title}": {self.says} ({WHERE})'


def _imports_only(importer: Callable[[str], bool], allowed: Callable[[str], bool]) -> Callable[[Import], bool]:
    """Broken by an import of sm_train, by a module `importer` selects, of a module `allowed` does not."""
    return lambda i: i.ours and importer(i.importer) and not allowed(i.imported)


def _imported_only_by(module: str, importers: Collection[str]) -> Callable[[Import], bool]:
    return lambda i: i.ours and i.imported == module and i.importer not in importers


def _trainer_api_in_restarts(i: Import) -> bool:
    return (
        i.importer in RESTART
        and not i.ours
        and i.imported.startswith("transformers.")
        and bool(TRAINER_API.search(i.imported))
    )


def _in(*modules: str) -> Callable[[str], bool]:
    return lambda module: module in modules


FLOW = "Data flows one way: env -> config -> task -> runner -> outputs"
RESTARTS = "Restarts know no Trainer and no Config"
RULES = (
    Rule(FLOW, "`env.py` imports only `errors.py` of sm_train", _imports_only(_in("env.py"), _in("errors.py"))),
    Rule(
        FLOW,
        "tasks import only `errors`, `metrics`, `catalog` and other `tasks/` modules",
        _imports_only(
            lambda module: module.startswith("tasks/"),
            lambda module: module.startswith("tasks/") or module in ("errors.py", "metrics.py", "catalog.py"),
        ),
    ),
    Rule(FLOW, "only `cli.py` imports `runner.py`", _imported_only_by("runner.py", ["cli.py"])),
    Rule(
        FLOW,
        "only `cli.py`, `runner.py`, `training.py` and `preflight.py` import `config.py` at run time",
        _imported_only_by("config.py", ["cli.py", "runner.py", "training.py", "preflight.py"]),
    ),
    Rule(FLOW, "`outputs.py` imports only `redact.py`", _imports_only(_in("outputs.py"), _in("redact.py"))),
    Rule(FLOW, "`deployable.py` only `outputs.py`", _imports_only(_in("deployable.py"), _in("outputs.py"))),
    Rule(FLOW, "`cli.py` is imported only by `__main__.py`", _imported_only_by("cli.py", ["__main__.py"])),
    Rule(
        RESTARTS,
        "The restart modules (`checkpoint.py`, `sharded.py`, `files.py`, `cache.py`, `claim.py`, `trajectory.py`) "
        "read and write what is on disk: of sm_train they import only each other, `errors.py`, `env.py` and "
        "`redact.py`",
        _imports_only(_in(*RESTART), _in(*RESTART, "errors.py", "env.py", "redact.py")),
    ),
    Rule(
        RESTARTS,
        "nothing of Trainer's API (`Trainer*`, `TrainingArguments`, `transformers.trainer*`)",
        _trainer_api_in_restarts,
    ),
)
NO_CYCLE = Rule(
    FLOW, "no module imports, directly or through others, a module that imports it (no import cycle)", bool
)


def cycles(found: Iterable[Import]) -> list[str]:
    """Import cycles among sm_train's modules (at least one for each group of modules that import one another), each
    import in it named with its file and line."""
    edges: dict[str, dict[str, Import]] = {}
    for i in found:
        if i.ours and i.imported != i.importer:
            edges.setdefault(i.importer, {}).setdefault(i.imported, i)
    reported: list[str] = []
    seen: set[frozenset[str]] = set()

    def walk(path: list[str]) -> None:
        for after in sorted(edges.get(path[-1], {})):
            if after in path:
                loop = [*path[path.index(after) :], after]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    steps = ", ".join(str(edges[a][b]) for a, b in zip(loop, loop[1:], strict=False))
                    reported.append(NO_CYCLE.named(f"import cycle: {steps}"))
            elif after not in done:
                walk([*path, after])
        done.add(path[-1])

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            walk([start])
    return reported


def violations(found: Iterable[Import]) -> list[str]:
    found = list(found)
    broken = [rule.named(i) for i in found for rule in RULES if rule.breaks(i)]
    return broken + cycles(found)


def test_the_package_keeps_the_import_rules() -> None:
    broken = violations(package_imports())
    assert not broken, "\n".join(broken)


def test_the_page_states_every_rule_checked() -> None:
    section = PAGE.read_text().split("## Rules a change must keep")[1].split("\n## ")[0]
    words = " ".join(section.replace("**", "").split())
    for rule in [*RULES, NO_CYCLE]:
        assert rule.title in words and rule.says in words, f"{WHERE} no longer says: {rule.title} ... {rule.says}"


MODULES = frozenset(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))


def imported_by(module: str, source: str) -> list[str]:
    return [i.imported for i in imports(module, source, MODULES | {module})]


def test_every_kind_of_import_is_read() -> None:
    source = """
import json
import sm_train.dist
from typing import TYPE_CHECKING
import typing
from transformers import AutoModel
from sm_train import errors, __version__
from .. import metrics
from .qa_spans import Windows
from ..redact import scrub

if TYPE_CHECKING:
    from sm_train.config import Config
else:
    from sm_train import files
if typing.TYPE_CHECKING:
    from sm_train import runner

def later():
    from sm_train.tasks import TASKS
"""
    assert imported_by("tasks/new.py", source) == [
        "json", "dist.py", "typing.TYPE_CHECKING", "typing", "transformers.AutoModel", "__init__.py", "errors.py",
        "metrics.py", "tasks/qa_spans.py", "redact.py", "files.py", "tasks/__init__.py",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("env.py", "from sm_train import config\n", "`env.py` imports only `errors.py`"),
        ("tasks/base.py", "def later():\n    from sm_train import training\n", "tasks import only"),
        ("tasks/new_task.py", "from sm_train.config import Config\n", "tasks import only"),
        ("data.py", "from sm_train.runner import run\n", "only `cli.py` imports `runner.py`"),
        ("tasks/base.py", "from .. import runner\n", "only `cli.py` imports `runner.py`"),
        ("data.py", "from sm_train.config import JobArgs\n", "import `config.py` at run time"),
        ("a_new_module.py", "import sm_train.config\n", "import `config.py` at run time"),
        ("outputs.py", "from . import env\n", "`outputs.py` imports only `redact.py`"),
        ("deployable.py", "from sm_train import tasks\n", "`deployable.py` only `outputs.py`"),
        ("local.py", "from sm_train.cli import main\n", "`cli.py` is imported only by `__main__.py`"),
        ("checkpoint.py", "from sm_train import training\n", "import only each other, `errors.py`"),
        ("cache.py", "from sm_train.config import Config\n", "import only each other, `errors.py`"),
        ("trajectory.py", "from transformers import TrainerState\n", "nothing of Trainer's API"),
        ("files.py", "from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR\n", "nothing of Trainer's API"),
    ],
)
def test_a_forbidden_import_is_named_with_its_rule(module: str, source: str, rule: str) -> None:
    found = imports(module, source, MODULES | {module})
    broken = violations(found)
    assert broken and all(f"sm_train/{module}:" in line and WHERE in line for line in broken), broken
    assert any(rule in line for line in broken), broken


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("data.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sm_train.config import JobArgs\n"),
        ("training.py", "from sm_train.config import Config\n"),
        ("tasks/summarization.py", "from sm_train.metrics import rouge\nfrom .base import Task\n"),
        ("checkpoint.py", "from sm_train import sharded\nfrom transformers import AutoConfig\n"),
        ("__main__.py", "from sm_train.cli import main\n"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert violations(imports(module, source, MODULES)) == []


def test_an_import_cycle_is_named_with_each_import() -> None:
    found = [
        *imports("a.py", "from sm_train import b\n", {"a.py", "b.py", "c.py"}),
        *imports("b.py", "def later():\n    import sm_train.c\n", {"a.py", "b.py", "c.py"}),
        *imports("c.py", "from . import a\n", {"a.py", "b.py", "c.py"}),
    ]
    (cycle,) = violations(found)
    assert cycle.startswith("import cycle: sm_train/a.py:1 imports sm_train/b.py, sm_train/b.py:2 imports")
    assert "sm_train/c.py:1 imports sm_train/a.py" in cycle and NO_CYCLE.says in cycle


def test_a_forbidden_import_added_to_a_copy_of_the_package_fails(tmp_path: Path) -> None:
    copy = tmp_path / "sm_train"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    base = copy / "tasks" / "base.py"
    lines = base.read_text().count("\n")
    base.write_text(base.read_text() + "\n\ndef _parsed():\n    from sm_train.config import parse\n")
    added = [line for line in violations(package_imports(copy)) if f"tasks/base.py:{lines + 4} " in line]
    assert len(added) == 3, added  # a task imports the parser: two rules broken, and config.py imports the tasks
    flow = 'breaks "Data flows one way: env -> config -> task -> runner -> outputs"'
    assert added[0].startswith(f"sm_train/tasks/base.py:{lines + 4} imports sm_train/config.py: {flow}: tasks import")
    assert added[1].endswith("and `preflight.py` import `config.py` at run time (" + WHERE + ")")
    assert added[2].startswith("import cycle: ") and "sm_train/config.py:" in added[2] and flow in added[2]
