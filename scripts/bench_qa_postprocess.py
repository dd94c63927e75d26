"""Benchmark: question-answering post-processing of 10,000 evaluation examples (2 windows of 384 tokens each).

Measures sm_train's best_answers() against a baseline measured in the same run: the straightforward search that
tries every pair of the n best start and end positions in a Python double loop. Both must give the same answers.

    python scripts/bench_qa_postprocess.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sm_train.tasks.question_answering import best_answers  # noqa: E402

SEQ, QUESTION_TOKENS, N_BEST, MAX_ANSWER = 384, 12, 20, 30


def synthetic(n_examples: int, seed: int = 0) -> tuple[list, list, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    examples, features = [], []
    context = " ".join(f"w{i}" for i in range(700))
    starts = [len(" ".join(f"w{i}" for i in range(k))) + (1 if k else 0) for k in range(700)]
    for e in range(n_examples):
        examples.append({"id": str(e), "context": context})
        for window in range(2):
            words = range(window * 300, window * 300 + SEQ - QUESTION_TOKENS - 1)
            offsets = [None] * QUESTION_TOKENS + [(starts[w], starts[w] + len(f"w{w}")) for w in words] + [None]
            features.append({"example_id": str(e), "offset_mapping": offsets, "cls_index": 0})
    start_logits = rng.normal(size=(len(features), SEQ)).astype(np.float32)
    end_logits = rng.normal(size=(len(features), SEQ)).astype(np.float32)
    return examples, features, start_logits, end_logits


def baseline(examples: list, features: list, start_logits: np.ndarray, end_logits: np.ndarray) -> dict[str, str]:
    """Every pair of the n best starts and ends, checked one by one."""
    by_example: dict[str, list[int]] = {}
    for index, feature in enumerate(features):
        by_example.setdefault(feature["example_id"], []).append(index)
    answers = {}
    for example in examples:
        best, best_score = "", float("-inf")
        for index in by_example[example["id"]]:
            offsets = features[index]["offset_mapping"]
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
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000)
    options = parser.parse_args()
    data = synthetic(options.examples)
    began = time.perf_counter()
    expected = baseline(*data)
    baseline_seconds = time.perf_counter() - began
    began = time.perf_counter()
    answers, _ = best_answers(*data, n_best_size=N_BEST, max_answer_length=MAX_ANSWER)
    ours_seconds = time.perf_counter() - began
    mismatches = sum(answers[k] != v for k, v in expected.items())
    print(f"examples: {options.examples}, windows: {len(data[1])}, n_best: {N_BEST}")
    print(f"baseline (Python double loop): {baseline_seconds:.2f} s")
    print(f"sm_train best_answers:         {ours_seconds:.2f} s")
    print(f"ratio sm_train / baseline:     {ours_seconds / baseline_seconds:.2f}")
    print(f"answers that differ:           {mismatches}")
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
