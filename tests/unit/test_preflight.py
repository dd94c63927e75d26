"""preflight.py: `python -m sm_train check` reports every problem of a job at once, and trains nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sm_train import cli
from tests import tiny
from tests.jobs import make_tree, write_rows

ROWS = [{"text": t, "label": label} for t, label in tiny.sentences(24)]


def folders(tmp_path: Path, train: list[dict], evaluation: list[dict]) -> list[str]:
    write_rows(tmp_path / "data" / "train" / "train.jsonl", train)
    write_rows(tmp_path / "data" / "validation" / "validation.jsonl", evaluation)
    return [
        "--channel",
        f"train={tmp_path / 'data' / 'train'}",
        "--channel",
        f"validation={tmp_path / 'data' / 'validation'}",
    ]


def test_good_input_passes_without_training(tmp_path, tiny_encoder, capsys) -> None:
    argv = folders(tmp_path, ROWS, ROWS[:8])
    hps = ["--model_name_or_path", str(tiny_encoder), "--max_seq_length", "8", "--hub_token", "hf_secret_value"]
    assert cli.main(["check", *argv, "--root", str(tmp_path / "tree"), "--", *hps]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("check: no problems found; nothing was trained or written.")
    assert "resolved configuration" not in out and "hub_token" not in out and len(out.splitlines()) < 20
    assert "[ok] data: train 24 rows, eval 8 rows (the job trains; evaluates at the end)" in out
    assert "about 3 steps per epoch (24 training inputs" in out
    assert "at the limit of 8 (truncated)" in out and "one training step on 2 inputs (CPU): loss" in out
    tree = tmp_path / "tree"
    assert not list((tree / "model").iterdir()) and not (tree / "checkpoints").exists()
    assert not list((tree / "output" / "data").iterdir())
    assert json.loads((tree / "input" / "config" / "hyperparameters.json").read_text())["max_seq_length"] == "8"


def test_verbose_prints_the_configuration_as_the_job_would_record_it(tmp_path, tiny_encoder, capsys) -> None:
    """After the stages and before the findings, which stay last; secrets redacted; nothing written in the tree."""
    argv = folders(tmp_path, ROWS, ROWS[:8])
    hps = ["--model_name_or_path", str(tiny_encoder), "--hub_token", "hf_secret_value", "--eval_steps", "2",
           "--eval_strategy", "steps"]  # fmt: skip
    tree = tmp_path / "tree"
    assert cli.main(["check", "--verbose", *argv, "--root", str(tree), "--", *hps]) == 0
    out = capsys.readouterr().out
    stages, rest = out.split("resolved configuration (secrets redacted):\n")
    assert "[ok] one training step" in stages
    text, findings = rest.rstrip("\n").rsplit("\n", 1)
    assert findings == "check: no problems found; nothing was trained or written."
    resolved = json.loads(text)
    assert resolved["will_run"] == {"trains": True, "evaluates": "every 2 steps and at the end",
                                    "rows": {"train": 24, "eval": 8}}  # fmt: skip
    training = resolved["training_args"]
    assert training["do_train"] is True and training["do_eval"] is True and training["hub_token"] == "***"
    assert "hf_secret_value" not in out and not list((tree / "output" / "data").iterdir())


def test_a_typo_a_bad_batch_size_and_a_bad_column_in_one_run(tmp_path, tiny_encoder, capsys) -> None:
    """One line per stage first, the numbered problems last."""
    argv = folders(tmp_path, ROWS, ROWS[:8])
    hps = ["--model_name_or_path", str(tiny_encoder), "--num_train_epoch", "2", "--per_device_train_batch_size", "0",
           "--text_column", "review"]  # fmt: skip
    assert cli.main(["check", *argv, "--", *hps]) == 1
    out = capsys.readouterr().out
    stages, findings = out.split("check: 3 problems:\n")
    assert "[problem] hyperparameters: listed below" in stages and "[problem] train data: listed below" in stages
    assert "[ok] tokenizer: " in stages and "[ok] data: train 24 rows, eval 8 rows" in stages
    typo, batch_size, column = findings.splitlines()  # the missing column, in both splits, is said once
    assert typo.startswith("  1. hyperparameters: Unknown hyperparameter 'num_train_epoch'. Did you mean")
    assert batch_size.endswith(
        "2. hyperparameters: Hyperparameter 'per_device_train_batch_size' must be at least 1, got 0."
    )
    assert column.startswith("  3. train data: text_column='review': no such column in the train data")


def test_a_bad_label_and_a_missing_column_in_one_check(tmp_path, tiny_encoder, capsys) -> None:
    """Problems in the training and the evaluation data are both reported, in a temporary tree."""
    train = [dict(row, label="" if i < 3 else row["label"]) for i, row in enumerate(ROWS)]
    evaluation = [{"review": row["text"], "label": row["label"]} for row in ROWS[:8]]
    argv = folders(tmp_path, train, evaluation)
    assert cli.main(["check", *argv, "--", "--model_name_or_path", str(tiny_encoder)]) == 1
    out = capsys.readouterr().out
    assert "check: 2 problems:" in out
    assert "1. train data: Column 'label' of the train data has 3 empty labels" in out
    assert "2. eval data: The eval data has no 'text' or 'sentence' column (columns: ['review', 'label'])" in out


def qa_tree(base: Path, encoder: Path) -> Path:
    """Questions of about 30 tokens: doc_stride=24 leaves them no room in windows of 48 tokens."""
    rows = [dict(row, question=" ".join(["what color is the film"] * 6)) for row in tiny.qa_rows(8)]
    write_rows(base / "rows" / "train.jsonl", rows)
    hps = {"task": "question-answering", "model_name_or_path": str(encoder), "max_seq_length": 48, "doc_stride": 24}
    return make_tree(base, hps, {"train": base / "rows"}).root


def test_three_jobs_three_problems_in_one_check(tmp_path, tiny_encoder, capsys) -> None:
    """A bad column, a bad label and an over-long doc_stride, in three job trees checked in one run."""
    write_rows(tmp_path / "rows" / "train.csv", ROWS)
    column = make_tree(tmp_path / "column", {"model_name_or_path": str(tiny_encoder), "text_column": "review"},
                       {"train": tmp_path / "rows"}).root  # fmt: skip
    one_label = [dict(row, label="pos") for row in ROWS]
    write_rows(tmp_path / "one" / "train.csv", one_label)
    label = make_tree(tmp_path / "label", {"model_name_or_path": str(tiny_encoder)}, {"train": tmp_path / "one"}).root
    qa = qa_tree(tmp_path / "qa", tiny_encoder)
    assert cli.main(["check", "--root", str(column), "--root", str(label), "--root", str(qa)]) == 1
    out = capsys.readouterr().out
    assert "check: 3 problems:" in out
    assert f"1. {column}: data: text_column='review': no such column in the train data" in out
    assert f"2. {label}: data: Column 'label' has a single label ['pos']; need at least two." in out
    assert f"3. {qa}: data: doc_stride=24 leaves no room for the question" in out
    for root in (column, label, qa):
        assert not list((root / "model").iterdir()) and not (root / "checkpoints").exists()


def test_independent_stages_go_on_after_a_problem(tmp_path, capsys) -> None:
    """No model (a path that does not exist), no data, and the checkpoint dir inside the model dir: all reported."""
    tree = make_tree(tmp_path, {"model_name_or_path": str(tmp_path / "missing"), "checkpoint_dir": "/opt/ml/x"}, {})
    root = tree.root
    hps = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    hps["checkpoint_dir"] = json.dumps(str(root / "model" / "checkpoints"))
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hps))
    assert cli.main(["check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "check: 3 problems:" in out
    assert "model: model_name_or_path=" in out and "does not exist" in out
    assert "checkpoint dir: The checkpoint dir" in out and "No training data" in out


def test_hyperparameter_problems_are_all_listed_and_the_rest_still_checked(tmp_path, capsys) -> None:
    """One run per mistake cost ~50 s each: a typo, a bad value, a missing model and an unseen evaluation label
    are all reported at once (the labels need no tokenizer)."""
    argv = folders(tmp_path, ROWS, [{"text": "so so", "label": "meh"}, *ROWS[:4]])
    hps = [
        "--learning_rat",
        "1e-4",
        "--per_device_train_batch_size",
        "0",
        "--model_name_or_path",
        str(tmp_path / "no"),
    ]
    assert cli.main(["check", *argv, "--", *hps]) == 1
    out = capsys.readouterr().out
    assert "check: 4 problems:" in out
    assert "1. hyperparameters: Unknown hyperparameter 'learning_rat'. Did you mean learning_rate?" in out
    assert "2. hyperparameters: Hyperparameter 'per_device_train_batch_size' must be at least 1, got 0." in out
    assert "3. model: model_name_or_path=" in out
    assert "4. data: Evaluation labels ['meh'] do not occur in the training data" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--model_name_or_path", "m"], "check: cannot use --model_name_or_path m"),
        (["--channel", "train"], "--channel takes NAME=PATH"),
        (["--root"], "check: cannot use --root"),
    ],
)
def test_usage_errors_exit_2(argv, says, capsys) -> None:
    assert cli.main(["check", *argv]) == 2
    assert says in capsys.readouterr().err


def test_inside_a_tree_from_the_environment(tmp_path, monkeypatch, tiny_encoder, capsys) -> None:
    """In a container (`docker run IMAGE check`): the tree SAGEMAKER_BASE_DIR or /opt/ml names."""
    write_rows(tmp_path / "rows" / "train.csv", ROWS)
    tree = make_tree(tmp_path, {"model_name_or_path": str(tiny_encoder), "max_steps": 2}, {"train": tmp_path / "rows"})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tree.root))
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "2 in all" in out and "resolved configuration" not in out
    assert cli.main(["check", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert '"hyperparameters_source": "' + str(tree.root / "input" / "config" / "hyperparameters.json") in out


@pytest.mark.parametrize("task", ["question-answering", "summarization"])
def test_every_task_passes_on_good_data_with_one_training_step(tmp_path, tiny_encoder, capsys, task) -> None:
    if task == "question-answering":
        encoder, rows, hps = tiny_encoder, tiny.qa_rows(6), {"max_seq_length": 64, "doc_stride": 16}
    else:
        encoder, rows, hps = tiny.build_seq2seq(tmp_path / "bart"), tiny.dialogues(6), {"max_target_length": 6}
    write_rows(tmp_path / "rows" / "train.jsonl", rows)
    write_rows(tmp_path / "val" / "val.jsonl", rows[:3])
    hps = {"task": task, "model_name_or_path": str(encoder), **hps}
    tree = make_tree(tmp_path, hps, {"train": tmp_path / "rows", "validation": tmp_path / "val"})
    assert cli.main(["check", "--root", str(tree.root)]) == 0
    out = capsys.readouterr().out
    assert "one training step on 2 inputs (CPU): loss" in out and "check: no problems found" in out
    if task == "question-answering":
        assert re.search(r"train: 6 of 6 rows tokenized into (\d+) inputs", out)[1] != "6"  # windows
    else:
        assert "labels: tokens min" in out and "at the limit of 6 (truncated)" in out


def test_a_malformed_config_file_is_a_problem_of_the_job(tmp_path, monkeypatch, capsys) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text('{"hosts": "algo-1"}')
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    assert cli.main(["check"]) == 1
    assert "1. job files: 'hosts' in " in capsys.readouterr().out
