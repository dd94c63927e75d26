"""Regenerate the hyperparameter reference in README.md from the code (`make readme`); a test checks it is current."""

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- hyperparameters:begin -->", "<!-- hyperparameters:end -->"


def generated() -> str:
    return subprocess.check_output([sys.executable, "-m", "sm_train", "hyperparameters"], text=True).strip()


def main() -> None:
    text = README.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    README.write_text(f"{head}{BEGIN}\n{generated()}\n{END}{tail}")


if __name__ == "__main__":
    main()
