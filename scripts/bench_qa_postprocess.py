"""Benchmark: question-answering evaluation of 10,000 examples (2 windows of 384 tokens each), from what
compute_metrics receives (the evaluation examples and windows as datasets, and the logits) to answers and metrics.

Measures sm_train (set_eval, paid once per job, then score, paid at every evaluation) against a baseline
measured in the same run: the straightforward path that reads the windows as Python rows and tries every pair of the
n best start and end positions in a Python double loop. Both must give the same answers and metrics.

    python scripts/bench_qa_postprocess.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import EvalPrediction

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sm_train.metrics import squad_metrics  # noqa: E402
from sm_train.tasks.question_answering import QuestionAnswering, QuestionAnsweringArgs  # noqa: E402

SEQ, QUESTION_TOKENS, N_BEST, MAX_ANSWER = 384, 12, 20, 30
WINDOW_COLUMNS = ["example_id", "offset_mapping", "cls_index"]


def synthetic(n_examples: int, seed: int = 0) -> tuple[Dataset, Dataset, np.ndarray, np.ndarray]:
    """Evaluation examples, their windows (as preprocess makes them) and random logits."""
    rng = np.random.default_rng(seed)
    context = " ".join(f"w{i}" for i in range(700))
    starts = [len(" ".join(f"w{i}" for i in range(k))) + (1 if k else 0) for k in range(700)]
    window_offsets = [
        [None] * QUESTION_TOKENS
        + [
            (starts[w], starts[w] + len(f"w{w}"))
            for w in range(window * 300, window * 300 + SEQ - QUESTION_TOKENS - 1)
        ]
        + [None]
        for window in range(2)
    ]
    ids = [str(e) for e in range(n_examples)]
    examples = Dataset.from_dict(
        {
            "id": ids,
            "question": ["q?"] * n_examples,
            "context": [context] * n_examples,
            "answers": [{"text": [f"w{e % 700}"], "answer_start": [starts[e % 700]]} for e in range(n_examples)],
        }
    )
    features = Dataset.from_dict(
        {
            "input_ids": [[1] * SEQ] * (2 * n_examples),
            "example_id": [i for i in ids for _ in range(2)],
            "offset_mapping": window_offsets * n_examples,
            "cls_index": [0] * (2 * n_examples),
        }
    )
    start_logits = rng.normal(size=(len(features), SEQ)).astype(np.float32)
    end_logits = rng.normal(size=(len(features), SEQ)).astype(np.float32)
    return examples, features, start_logits, end_logits


def baseline(
    examples: Dataset, features: Dataset, start_logits: np.ndarray, end_logits: np.ndarray
) -> tuple[dict[str, str], dict[str, Any]]:
    """Windows read as Python rows; every pair of the n best starts and ends checked one by one."""
    rows = examples.to_list()
    windows = features.select_columns(WINDOW_COLUMNS).to_list()
    by_example: dict[str, list[int]] = {}
    for index, window in enumerate(windows):
        by_example.setdefault(window["example_id"], []).append(index)
    answers = {}
    for example in rows:
        best, best_score = "", float("-inf")
        for index in by_example[example["id"]]:
            offsets = windows[index]["offset_mapping"]
            starts, ends = start_logits[index], end_logits[index]
            for s in np.argsort(starts)[-1 : -N_BEST - 1 : -1].tolist():
                for e in np.argsort(ends)[-1 : -N_BEST - 1 : -1].tolist():
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > MAX_ANSWER:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        best_score, best = score, example["context"][offsets[s][0] : offsets[e][1]]
        answers[example["id"]] = best
    return answers, squad_metrics(answers, {r["id"]: r["answers"]["text"] for r in rows}, False)


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000)
    options = parser.parse_args()
    examples, features, start_logits, end_logits = synthetic(options.examples)

    (expected, expected_metrics), baseline_seconds = timed(baseline, examples, features, start_logits, end_logits)
    # Post-processing never tokenizes: the task only needs to know the length limit of the windows.
    tokenizer = SimpleNamespace(model_max_length=384)
    task = QuestionAnswering(QuestionAnsweringArgs(n_best_size=N_BEST, max_answer_length=MAX_ANSWER), tokenizer)
    _, set_eval_seconds = timed(task.set_eval, examples, features, None)
    prediction = EvalPrediction(predictions=(start_logits, end_logits), label_ids=None)
    (metrics, (answers, _)), metrics_seconds = timed(task.score, prediction)
    ours_seconds = set_eval_seconds + metrics_seconds

    mismatches = sum(answers.get(k) != v for k, v in expected.items())
    print(f"examples: {options.examples}, windows: {len(features)}, n_best: {N_BEST}")
    print(f"baseline (Python rows, double loop):  {baseline_seconds:.2f} s")
    print(f"sm_train set_eval (once per job):     {set_eval_seconds:.2f} s")
    print(f"sm_train score (each eval):           {metrics_seconds:.2f} s")
    print(f"sm_train total:                       {ours_seconds:.2f} s")
    print(f"ratio sm_train / baseline:            {ours_seconds / baseline_seconds:.2f}")
    print(f"answers that differ:                  {mismatches}")
    if answers != expected or metrics != expected_metrics:
        sys.exit(1)


if __name__ == "__main__":
    main()
