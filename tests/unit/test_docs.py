"""README.md and docs/architecture.md: the generated hyperparameter reference is current, every module is named."""

from pathlib import Path

from scripts.update_readme import BEGIN, END, generated

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_hyperparameter_reference_is_current() -> None:
    text = README.read_text()
    assert text.split(BEGIN)[1].split(END)[0].strip() == generated(), "run `make docs`"


def test_readme_quickstart_gives_the_two_commands() -> None:
    quickstart = README.read_text().split("## Quickstart")[1].split("##")[0]
    assert "make demo" in quickstart and "make test" in quickstart


def test_the_architecture_page_names_every_module_and_the_readme_links_it() -> None:
    root = README.parent
    page = (root / "docs" / "architecture.md").read_text()
    modules = [p.relative_to(root / "sm_train").as_posix() for p in (root / "sm_train").rglob("*.py")]
    missing = [m for m in modules if m not in ("__init__.py", "__main__.py") and f"`{m}`" not in page]
    assert not missing, f"docs/architecture.md does not name {missing}"
    text = README.read_text()
    assert "docs/architecture.md" in text and "make test-fast" in text
    assert "../shared" not in text + page
