"""Extractive question answering (SQuAD v1.1 / v2.0 style): find the answer span in a context.

Long contexts become overlapping windows (doc_stride). Evaluation features keep their offsets and example ids, which
tasks/qa_spans.py (pure functions) turns with the windows' logits back into one answer per question.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Value
from transformers import (
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    default_data_collator,
)

from sm_train.catalog import METRIC_NAMES, QuestionAnsweringArgs
from sm_train.errors import ConfigError, DataError
from sm_train.metrics import squad_metrics
from sm_train.tasks.base import Task, capped_length, find_column, reference_split, require_columns, require_text
from sm_train.tasks.predictions import write_test_predictions
from sm_train.tasks.qa_spans import (
    ANSWER_TYPE,
    Windows,
    answer_tokens,
    best_answers,
    misplaced_answers,
    normalized_answers,
)

logger = logging.getLogger(__name__)


class QuestionAnswering(Task):
    name = "question-answering"
    Args = QuestionAnsweringArgs
    model_class = AutoModelForQuestionAnswering
    lora_task_type = "QUESTION_ANS"
    metric_names = METRIC_NAMES[name]
    best_metric = "f1"  # QA evaluation is judged by F1; its loss on windows says little

    def __init__(self, args: QuestionAnsweringArgs, tokenizer: PreTrainedTokenizerBase | None) -> None:
        super().__init__(args, tokenizer)
        self.max_length = capped_length("max_seq_length", args.max_seq_length, tokenizer)
        # What evaluations map the windows' logits back to (set_eval); references None: a test set without answers.
        self.eval_contexts: dict[str, str] = {}
        self.eval_references: dict[str, list[str]] | None = {}
        self.eval_windows: Windows | None = None
        self.test_ids: list[str] = []  # every test row's id, those dropped for a blank context too (prepare)

    def prepare(self, raw: DatasetDict) -> DatasetDict:
        args, tokenizer = self.args, self.tokenizer
        if tokenizer is not None and not tokenizer.is_fast:
            raise ConfigError(
                f"question-answering needs a fast tokenizer (offset mapping); {type(tokenizer).__name__} is a slow "
                "one. Use a model that ships tokenizer.json."
            )
        reference = reference_split(raw)
        texts = {args.question_column: "question_column", args.context_column: "context_column"}
        for column, hyperparameter in texts.items():
            find_column(raw[reference], column, (), hyperparameter, reference)
        require_columns(raw, texts, reference)
        # The answers are read before any row is dropped: a row number in a message is the row's place in the data.
        read = DatasetDict({split_name: self._read_answers(split, split_name) for split_name, split in raw.items()})
        self.test_ids = read["test"]["id"][:] if "test" in read else []
        # An empty context holds no answer (and crashed the window labelling): those rows go, counted (a test set's
        # are predicted as no answer).
        prepared = require_text(read, texts, drop_blank_in=args.context_column)
        for split_name, split in prepared.items():
            if args.answer_column in split.column_names:
                self._check_answers(split, split_name)
            if tokenizer is not None:
                self._check_stride(split)
        return prepared

    def _read_answers(self, split: Dataset, where: str) -> Dataset:
        """Unique string ids and the answers in one shape ({text: [...], answer_start: [...]}). A test set without
        answers (no column, or not one answer in it) is predicted without metrics: its answers column goes."""
        args = self.args
        labelled = where != "test" or args.answer_column in split.column_names
        if labelled:  # answers may be empty lists (unanswerable questions), but the column must be there
            find_column(split, args.answer_column, (), "answer_column", where)
        if "id" not in split.column_names or len(set(split["id"])) != len(split):
            # Predictions are matched to questions by id: ids must exist and be unique.
            if "id" in split.column_names:
                logger.warning("the %s data has duplicate ids; numbering its rows instead", where)
                split = split.remove_columns("id")
            split = split.add_column("id", [str(i) for i in range(len(split))])
        if not labelled:
            logger.info("the test data has no %r column: predictions only, no test metrics", args.answer_column)
            return split.cast_column("id", Value("string"))
        features = split.features.copy()
        features.update({args.answer_column: ANSWER_TYPE, "id": Value("string")})
        read = split.map(
            normalized_answers, batched=True, with_indices=True, features=features, desc="Reading answers",
            fn_kwargs={"column": args.answer_column, "where": where},
        )  # fmt: skip
        if where == "test" and not any(answer["text"] for answer in read[args.answer_column][:]):
            logger.info("the test data holds no answers: predictions only, no test metrics")
            return read.remove_columns(args.answer_column)
        return read

    def _check_answers(self, split: Dataset, where: str) -> None:
        """answer_start must point at the answer text in the context; fail when most rows disagree."""
        answered, wrong = misplaced_answers(split[self.args.context_column], split[self.args.answer_column])
        if answered < len(split) and not self.args.version_2_with_negative:
            logger.warning(
                "%d %s questions have no answer: set version_2_with_negative=true to let the model predict none",
                len(split) - answered,
                where,
            )
        if wrong:
            message = (
                f"{wrong} of {answered} answered {where} rows have an answer_start that does not point at the "
                "answer text in the context"
            )
            if wrong * 2 > answered:
                raise DataError(f"{message}; answer_start must be the character offset of the answer in the context.")
            logger.warning("%s; their training labels may be wrong", message)

    def preprocess(self, split: Dataset, *, training: bool, num_proc: int | None = None) -> Dataset:
        return split.map(
            self._windows,
            batched=True,
            remove_columns=split.column_names,
            num_proc=num_proc,
            fn_kwargs={"keep_offsets": not training},
            desc="Tokenizing into windows",
        )

    def set_eval(self, examples: Dataset, features: Dataset, order: Any) -> None:
        """Read once, column by column, what every evaluation maps the predictions back to. The windows carry their
        example ids: their order needs no mapping back."""
        # Whole columns ([:]): iterating a column of a dataset reads it row by row.
        ids, column = examples["id"][:], self.args.answer_column
        self.eval_contexts = dict(zip(ids, examples[self.args.context_column][:], strict=True))
        self.eval_references = (
            {i: answer["text"] for i, answer in zip(ids, examples[column][:], strict=True)}
            if column in examples.column_names
            else None
        )
        columns = features.select_columns(["example_id", "offset_mapping", "cls_index"])
        self.eval_windows = Windows.from_table(columns.with_format("arrow")[:])

    def _check_stride(self, split: Dataset) -> None:
        """A stride that leaves no room for the question makes the tokenizer panic (a Rust panic, not an error)."""
        tokenizer = self.tokenizer
        longest = max(
            (
                len(ids)
                for ids in tokenizer(list(split[self.args.question_column]), add_special_tokens=False)["input_ids"]
            ),
            default=0,
        )
        room = self.max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
        if self.args.doc_stride >= room:
            raise ConfigError(
                f"doc_stride={self.args.doc_stride} leaves no room for the question: with max_seq_length="
                f"{self.max_length} and questions up to {longest} tokens, each window holds {room} context "
                f"tokens. Use doc_stride < {max(room, 1)} or a larger max_seq_length."
            )

    def _windows(self, batch: dict[str, list], keep_offsets: bool) -> dict[str, Any]:
        args, tokenizer = self.args, self.tokenizer
        pad_on_right = tokenizer.padding_side == "right"
        questions = [q.lstrip() for q in batch[args.question_column]]
        contexts = batch[args.context_column]
        answers = batch.get(args.answer_column)  # None: a test set without answers
        encoded = tokenizer(
            questions if pad_on_right else contexts,
            contexts if pad_on_right else questions,
            truncation="only_second" if pad_on_right else "only_first",
            max_length=self.max_length,
            stride=args.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length" if args.pad_to_max_length else False,
        )
        context_id = 1 if pad_on_right else 0
        sample_map = encoded.pop("overflow_to_sample_mapping")
        offsets_all = encoded.pop("offset_mapping")
        starts, ends, cls_indexes, example_ids, kept_offsets = [], [], [], [], []
        for i, offsets in enumerate(offsets_all):
            ids = encoded["input_ids"][i]
            cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            sequence_ids = encoded.sequence_ids(i)
            sample = sample_map[i]
            if answers is not None:
                context_tokens = [t for t, s in enumerate(sequence_ids) if s == context_id]
                start, end = answer_tokens(answers[sample], offsets, context_tokens, cls)
                starts.append(start)
                ends.append(end)
            cls_indexes.append(cls)
            example_ids.append(batch["id"][sample])
            kept_offsets.append([o if sequence_ids[k] == context_id else None for k, o in enumerate(offsets)])
        if answers is not None:
            encoded["start_positions"], encoded["end_positions"] = starts, ends
        if keep_offsets:
            encoded |= {"example_id": example_ids, "offset_mapping": kept_offsets, "cls_index": cls_indexes}
        return encoded

    def collator(self, model: PreTrainedModel, pad_multiple: int | None) -> Any:
        if self.args.pad_to_max_length:
            return default_data_collator
        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=pad_multiple)

    def score(self, prediction: EvalPrediction) -> tuple[dict[str, float], tuple[dict[str, str], dict[str, Any]]]:
        """The SQuAD metrics, and (the answer of each question id, its n best candidates)."""
        start_logits, end_logits = prediction.predictions[:2]
        args = self.args
        answers, nbest = best_answers(
            self.eval_contexts,
            self.eval_windows,
            start_logits,
            end_logits,
            n_best_size=args.n_best_size,
            max_answer_length=args.max_answer_length,
            with_negative=args.version_2_with_negative,
            null_score_diff_threshold=args.null_score_diff_threshold,
        )
        references = self.eval_references
        metrics = {} if references is None else squad_metrics(answers, references, args.version_2_with_negative)
        return metrics, (answers, nbest)

    def write_predictions(self, directory: Path, predictions: Any, split: str = "eval") -> None:
        """The evaluation's answers and n best (run_qa's files); a test set's as predictions.TEST_FILE: answer ("" for
        none), the best span's score (start + end logit) and its character offsets in the context."""
        if predictions is None:
            return
        answers, nbest = predictions
        if split == "test":
            rows = []
            for row_id in self.test_ids:  # a row dropped for a blank context has no answer
                answer = answers.get(row_id, "")
                best = nbest[row_id][0] if answer else {}
                rows.append({"id": row_id, "answer": answer, **{k: best.get(k) for k in ("score", "start", "end")}})
            write_test_predictions(directory, rows)
            return
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "eval_predictions.json").write_text(json.dumps(answers, indent=2, ensure_ascii=False))
        (directory / "eval_nbest_predictions.json").write_text(json.dumps(nbest, indent=2, ensure_ascii=False))

    def card(self) -> dict[str, Any]:
        return {"version_2_with_negative": self.args.version_2_with_negative}
