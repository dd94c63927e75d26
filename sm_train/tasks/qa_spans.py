"""The pure parts of extractive question answering: reading answers (answer_list, normalized_answers), checking offsets
(misplaced_answers), a window's training label (answer_tokens), the evaluation windows read column by column
(Windows), and best_answers(), which turns the windows' start/end logits back into one answer text per question."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Sequence, Value

from sm_train.errors import DataError

ANSWER_TYPE = {"text": Sequence(Value("string")), "answer_start": Sequence(Value("int32"))}


def answer_list(value: Any) -> dict[str, list]:
    """{text: [...], answer_start: [...]} from that shape, a list of {text, answer_start}, or its JSON text."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {"text": [], "answer_start": []}
    if isinstance(value, list):
        value = {"text": [a["text"] for a in value], "answer_start": [a["answer_start"] for a in value]}
    return {"text": list(value.get("text") or []), "answer_start": [int(s) for s in value.get("answer_start") or []]}


def normalized_answers(batch: dict[str, list], indices: list[int], column: str, where: str) -> dict[str, list]:
    """A batch's answers in one shape (answer_list) and its ids as text (datasets map, batched, with indices)."""
    answers = []
    for index, row_id, value in zip(indices, batch["id"], batch[column], strict=True):
        try:
            answers.append(answer_list(value))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(
                f"Row {row_id!r}: cannot read column {column!r}; expected "
                '{"text": [...], "answer_start": [...]} with integer offsets, or that as JSON text.'
            ) from e  # not the exception's text: int() quotes the value
        texts, starts = len(answers[-1]["text"]), len(answers[-1]["answer_start"])
        if texts != starts:  # zip() would pair what it can and drop the rest silently
            raise DataError(
                f"Row {index} of the {where} data (counting from 0) has {texts} answer texts but {starts} "
                f"answer_start offsets in column {column!r}; give each answer one text and one answer_start "
                "(two lists of the same length)."
            )
    return {column: answers, "id": [str(i) for i in batch["id"]]}


def misplaced_answers(contexts: list[str], answers: list[dict[str, list]]) -> tuple[int, int]:
    """(answered rows, rows whose first answer_start does not point at its text in the context)."""
    answered = [(c, a["answer_start"][0], a["text"][0]) for c, a in zip(contexts, answers, strict=True) if a["text"]]
    return len(answered), sum(1 for c, start, text in answered if c[start : start + len(text)] != text)


def answer_tokens(answer: dict[str, list], offsets: list, context_tokens: list[int], cls: int) -> tuple[int, int]:
    """The training label of one window: the first and last token of the answer's first span, or (cls, cls) when the
    window does not hold it whole (or the question has no answer, or the context part has no tokens)."""
    if not (answer["text"] and context_tokens):
        return cls, cls
    start_char = answer["answer_start"][0]
    end_char = start_char + len(answer["text"][0])
    first, last = context_tokens[0], context_tokens[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls, cls
    start = next(t for t in range(first, last + 1) if offsets[t][1] > start_char)
    end = next(t for t in range(last, first - 1, -1) if offsets[t][0] < end_char)
    return start, end


@dataclass(frozen=True)
class Windows:
    """The evaluation windows, column by column: each window's example id and CLS position, and each token's
    character span in the context (-1 outside it). Window i's tokens are at bounds[i]:bounds[i + 1]."""

    example_ids: list[str]
    cls_index: np.ndarray
    bounds: np.ndarray
    span_starts: np.ndarray
    span_ends: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> Windows:
        """From the columns example_id, cls_index and offset_mapping (per token [start, end], null outside the
        context), through Arrow: as Python lists the offsets take ~0.6 s per thousand windows to read."""
        windows = table.column("offset_mapping").combine_chunks()
        tokens = windows.values  # the tokens of all windows, one after another; bounds index into it

        def span_edge(index: int) -> np.ndarray:
            return pc.list_element(tokens, index).fill_null(-1).cast(pa.int32()).to_numpy()

        return cls(
            example_ids=table.column("example_id").to_pylist(),
            cls_index=table.column("cls_index").to_numpy(),
            bounds=windows.offsets.to_numpy(),
            span_starts=span_edge(0),
            span_ends=span_edge(1),
        )


def best_answers(
    contexts: dict[str, str],
    windows: Windows,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Answer text per example id, and the n best candidates (text, score: start + end logit, start and end:
    character offsets in the context), from the logits of every window.

    contexts: the context of each example id, in output order; windows: in logits order. A span must lie in the
    context, end at or after its start and be at most max_answer_length tokens. With SQuAD v2 the answer is "" when
    the best null score (CLS start and end) beats the best span by more than null_score_diff_threshold.
    """
    by_example: dict[str, list[int]] = {}
    for index, example_id in enumerate(windows.example_ids):
        by_example.setdefault(example_id, []).append(index)
    answers: dict[str, str] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    for example_id, context in contexts.items():
        candidates: list[tuple[float, int, int]] = []
        null_score = float("inf")
        for index in by_example.get(example_id, []):
            first, last = windows.bounds[index], windows.bounds[index + 1]
            span_starts, span_ends = windows.span_starts[first:last], windows.span_ends[first:last]
            starts, ends = start_logits[index][: last - first], end_logits[index][: last - first]
            cls = windows.cls_index[index]
            null_score = min(null_score, float(starts[cls] + ends[cls]))
            # Score every pair of the n best starts and ends at once; keep spans inside the context, in order, short.
            top_starts = np.argsort(starts)[::-1][:n_best_size]
            top_ends = np.argsort(ends)[::-1][:n_best_size]
            length = top_ends[None, :] - top_starts[:, None]
            in_context = (span_starts[top_starts] >= 0)[:, None] & (span_ends[top_ends] >= 0)[None, :]
            rows, cols = np.nonzero(in_context & (length >= 0) & (length < max_answer_length))
            scores = starts[top_starts[rows]] + ends[top_ends[cols]]
            best = np.argsort(scores)[::-1][:n_best_size]
            candidates += zip(
                scores[best].tolist(),
                span_starts[top_starts[rows[best]]].tolist(),
                span_ends[top_ends[cols[best]]].tolist(),
                strict=True,
            )
        candidates = sorted(candidates, reverse=True)[:n_best_size]
        texts = [{"text": context[a:b], "score": score, "start": a, "end": b} for score, a, b in candidates]
        best_score = candidates[0][0] if candidates else float("-inf")
        no_answer = not candidates or (with_negative and null_score - best_score > null_score_diff_threshold)
        answers[example_id] = "" if no_answer else texts[0]["text"]
        nbest[example_id] = texts
    return answers, nbest
