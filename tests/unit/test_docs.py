from pathlib import Path

from scripts.update_readme import BEGIN, END, generated

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_hyperparameter_reference_is_current() -> None:
    text = README.read_text()
    assert text.split(BEGIN)[1].split(END)[0].strip() == generated(), "run `make readme`"


def test_readme_quickstart_gives_the_two_commands() -> None:
    quickstart = README.read_text().split("## Quickstart")[1].split("##")[0]
    assert "make demo" in quickstart and "make test" in quickstart
