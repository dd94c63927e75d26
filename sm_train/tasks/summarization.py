"""Summarization with encoder-decoder models (BART, T5, Pegasus, ...): text in, summary out.

Evaluation generates (predict_with_generate), decodes with -100 replaced by the pad id, and scores ROUGE locally with
the rouge-score package. The generation length and beams evaluation used are written into the model's generation
config, so the saved model summarizes the same way (not cut at transformers' default of 20 tokens).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import (
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)

from sm_train.catalog import METRIC_NAMES, SummarizationArgs
from sm_train.errors import DataError
from sm_train.metrics import rouge
from sm_train.tasks.base import (
    Task,
    capped_length,
    find_column,
    in_dataset_order,
    labelled_splits,
    null_count,
    reference_split,
    require_columns,
    require_text,
)
from sm_train.tasks.predictions import row_ids, with_ids, write_test_predictions

logger = logging.getLogger(__name__)

# (text, summary) column pairs of well-known datasets: samsum/dialogsum, xsum, cnn_dailymail, and the generic one.
KNOWN_LAYOUTS = (("dialogue", "summary"), ("document", "summary"), ("article", "highlights"), ("text", "summary"))
LABEL_PAD = -100  # ignored by the loss; must become the pad id before decoding (else OverflowError)


def decode(token_ids: np.ndarray, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Token ids (padded with -100 by the collator and by Trainer's gathering) back to text."""
    token_ids = np.where(token_ids == LABEL_PAD, tokenizer.pad_token_id, token_ids)
    return [text.strip() for text in tokenizer.batch_decode(token_ids, skip_special_tokens=True)]


class Seq2SeqCollator(DataCollatorForSeq2Seq):
    """DataCollatorForSeq2Seq, leaving no "labels" key in a batch without labels (a test set without summaries). The
    original sets it to None, which Seq2SeqTrainer.prediction_step takes for labels (`"labels" in inputs`) and then
    reads a loss the model never computed: KeyError 'loss' (transformers 4.57 and 5.x alike)."""

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> Any:
        batch = super().__call__(features, return_tensors)
        if "labels" in batch and batch["labels"] is None:
            del batch["labels"]
        return batch


class Summarization(Task):
    name = "summarization"
    Args = SummarizationArgs
    model_class = AutoModelForSeq2SeqLM
    training_args_class = Seq2SeqTrainingArguments
    trainer_class = Seq2SeqTrainer
    lora_task_type = "SEQ_2_SEQ_LM"
    metric_names = METRIC_NAMES[name]
    # Evaluation generates summaries; predictions move to the CPU every 16 steps so memory stays bounded.
    training_defaults = {"predict_with_generate": True, "eval_accumulation_steps": 16}

    def __init__(self, args: SummarizationArgs, tokenizer: PreTrainedTokenizerBase | None) -> None:
        super().__init__(args, tokenizer)
        self.max_length = capped_length("max_source_length", args.max_source_length, tokenizer)
        self.prefix = args.source_prefix  # resolved for the model in configure
        self.text_column = self.summary_column = ""  # found in prepare
        # set_eval: the evaluation row each feature came from (the features are in length order; None: in order),
        # and each row's id (a test set's predictions file).
        self.feature_rows: Any = None
        self.row_ids: list[Any] = []

    def prepare(self, raw: DatasetDict) -> DatasetDict:
        reference = reference_split(raw)
        self.text_column, self.summary_column = self._columns(raw[reference], reference)
        test = raw.get("test")
        if test is not None and not _has_summaries(test, self.summary_column):
            logger.info("the test data has no summaries in %r: predictions only, no test metrics", self.summary_column)
            kept = [c for c in test.column_names if c != self.summary_column]
            raw = DatasetDict({**raw, "test": test.select_columns(kept)})
        summarized = labelled_splits(raw, self.summary_column)
        require_columns(raw, [self.text_column], reference)
        require_columns(summarized, [self.summary_column], reference_split(summarized) if summarized else reference)
        # A blank summary teaches the model to stop at once, and scores ROUGE 0 in evaluation whatever it writes; a
        # test set keeps every row (its predictions file has one line per row).
        prepared = DatasetDict()
        for name, split in raw.items():
            texts = {self.text_column: "text_column"}
            if name in summarized:
                texts[self.summary_column] = "summary_column"
            dropped = self.summary_column if name != "test" else None
            prepared[name] = require_text(DatasetDict({name: split}), texts, drop_blank_in=dropped)[name]
        return prepared

    def _columns(self, split: Dataset, where: str) -> tuple[str, str]:
        """The text and summary columns; a test set's summaries may be missing (predictions only)."""
        args, columns = self.args, split.column_names
        if args.text_column and args.summary_column:
            if where == "test":
                return find_column(split, args.text_column, (), "text_column", where), args.summary_column
            return (find_column(split, args.text_column, (), "text_column", where),
                    find_column(split, args.summary_column, (), "summary_column", where))  # fmt: skip
        for text, summary in KNOWN_LAYOUTS:
            text, summary = args.text_column or text, args.summary_column or summary
            if text in columns and (summary in columns or where == "test"):
                return text, summary
        raise DataError(
            f"Cannot tell the text and summary columns of the {where} data (columns: {columns}); set the "
            f"text_column and summary_column hyperparameters. Known layouts: {KNOWN_LAYOUTS}."
        )

    def configure(self, model: PreTrainedModel, args: Any) -> None:
        """Prefix for T5 models, and the generation settings evaluation uses written into the model's config."""
        self.prefix = self.args.source_prefix
        if self.prefix is None and "t5" in (model.config.model_type or ""):
            self.prefix = "summarize: "
            logger.info("T5 model: every input gets the prefix 'summarize: ' (set source_prefix to change it)")
        self.prefix = self.prefix or ""
        # Saved in config.json: transformers' summarization pipelines (4.x, the inference toolkit) prepend it.
        model.config.prefix = self.prefix or None
        generation = model.generation_config
        max_length = args.generation_max_length or self.target_length(training=False)
        num_beams = args.generation_num_beams or generation.num_beams or 1
        generation.max_length, generation.max_new_tokens, generation.num_beams = max_length, None, num_beams
        logger.info("generation: max_length=%d num_beams=%d (evaluation and the saved model)", max_length, num_beams)

    def target_length(self, training: bool) -> int | None:
        return self.args.max_target_length if training else (
            self.args.val_max_target_length or self.args.max_target_length
        )  # fmt: skip

    def preprocess(self, split: Dataset, *, training: bool, num_proc: int | None = None) -> Dataset:
        target_length = self.target_length(training)
        text, summary, prefix, source_length = self.text_column, self.summary_column, self.prefix, self.max_length
        tokenizer = self.tokenizer

        summarized = summary in split.column_names  # a test set may have none

        def encode(batch: dict[str, list]) -> dict[str, Any]:
            inputs = tokenizer([prefix + str(t) for t in batch[text]], max_length=source_length, truncation=True)
            if summarized:
                labels = tokenizer(
                    text_target=[str(s) for s in batch[summary]], max_length=target_length, truncation=True
                )
                inputs["labels"] = labels["input_ids"]
            return inputs

        return split.map(encode, batched=True, remove_columns=split.column_names, num_proc=num_proc, desc="Tokenizing")

    def set_eval(self, examples: Dataset, features: Dataset, order: Any) -> None:
        """One feature per evaluation row: the order puts the generated summaries back in the data's order."""
        self.feature_rows, self.row_ids = order, row_ids(examples)

    def collator(self, model: PreTrainedModel, pad_multiple: int | None) -> DataCollatorForSeq2Seq:
        # Inputs and labels alike are padded to the multiple.
        return Seq2SeqCollator(
            self.tokenizer, model=model, label_pad_token_id=LABEL_PAD, pad_to_multiple_of=pad_multiple
        )

    def preprocess_logits(self, logits: Any, labels: Any) -> Any:
        """With predict_with_generate=false evaluation sees vocabulary-sized logits: keep only the likeliest token
        of each position, or memory grows with vocabulary x length x rows."""
        logits = logits[0] if isinstance(logits, tuple) else logits
        return logits.argmax(-1) if logits.dim() == 3 else logits

    def score(self, prediction: EvalPrediction) -> tuple[dict[str, float], list[str]]:
        """ROUGE and the generated length (none without reference summaries), and the summaries: one per evaluation
        row, in the data's order."""
        generated = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        decoded = decode(generated, self.tokenizer)
        metrics = {}
        if prediction.label_ids is not None:
            references = decode(prediction.label_ids, self.tokenizer)
            lengths = np.count_nonzero((generated != self.tokenizer.pad_token_id) & (generated != LABEL_PAD), axis=1)
            metrics = {**rouge(decoded, references), "gen_len": float(np.mean(lengths))}
        return metrics, in_dataset_order(decoded, self.feature_rows)

    def write_predictions(self, directory: Path, predictions: Any, split: str = "eval") -> None:
        """The evaluation's summaries one per line (generated_predictions.txt, as run_summarization writes them); a
        test set's as predictions.TEST_FILE, each with its row's id (set_eval of the test rows)."""
        if predictions is None:
            return
        if split == "test":
            ids = self.row_ids if len(self.row_ids) == len(predictions) else list(range(len(predictions)))
            write_test_predictions(directory, with_ids(ids, [{"summary": text} for text in predictions]))
            return
        directory.mkdir(parents=True, exist_ok=True)
        lines = (prediction.replace("\n", " ") for prediction in predictions)
        (directory / "generated_predictions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def card(self) -> dict[str, Any]:
        return {"source_prefix": self.prefix}


def _has_summaries(split: Dataset, column: str) -> bool:
    """A test set has reference summaries unless the column is missing, or all null or blank."""
    if column not in split.column_names or null_count(split, column) == len(split):
        return False
    return any(isinstance(v, str) and v.strip() for v in split.unique(column))
