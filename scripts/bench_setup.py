"""What scripts/bench.py trains on: a BERT of a chosen size built here, length-skewed text-classification rows, and
the bare Trainer script its start-up is compared with. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests import tiny

MARK = "first training step of this attempt done"  # what sm_train logs, and what the bare Trainer script prints
SIZES = {  # BertConfig shapes: hidden, layers, heads, intermediate
    "tiny": (32, 2, 2, 64),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}
MEDIAN_WORDS, SIGMA = 43, 0.65  # lognormal words per row; one token per word, plus [CLS] and [SEP]
BARE_TRAINER = """\
import sys
from datasets import load_dataset
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainerCallback, TrainingArguments)

model_dir, csv_path, output_dir, max_length, batch_size, max_steps = sys.argv[1:]


class FirstStep(TrainerCallback):
    done = False

    def on_step_end(self, args, state, control, **kwargs):
        if not self.done:
            self.done = True
            print("MARK", flush=True)


raw = load_dataset("csv", data_files={"train": csv_path})["train"]
labels = sorted(set(raw["label"]))
label2id = {label: i for i, label in enumerate(labels)}
tokenizer = AutoTokenizer.from_pretrained(model_dir)


def encode(batch):
    encoded = tokenizer(batch["text"], truncation=True, max_length=int(max_length))
    encoded["labels"] = [label2id[label] for label in batch["label"]]
    return encoded


train = raw.map(encode, batched=True, remove_columns=raw.column_names)
model = AutoModelForSequenceClassification.from_pretrained(
    model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
)
args = TrainingArguments(output_dir=output_dir, max_steps=int(max_steps), per_device_train_batch_size=int(batch_size),
                         save_strategy="no", report_to="none", disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                  data_collator=DataCollatorWithPadding(tokenizer), callbacks=[FirstStep()])
trainer.train()
""".replace("MARK", MARK)


def build_model(directory: Path, size: str, max_length: int) -> Path:
    """A randomly initialised BERT of the given shape (no task head, like a Hub checkpoint) and tests/tiny's
    WordPiece tokenizer, whose vocabulary holds every word the rows use."""
    from transformers import BertConfig, BertModel

    hidden, layers, heads, intermediate = SIZES[size]
    tokenizer = tiny.build_tokenizer()
    tokenizer.model_max_length = max_length
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max(512, max_length),
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """{'text', 'label'} rows of lognormal length (median ~45 tokens, 99th percentile ~200) labelled by the one
    sentiment word each holds."""
    rng = np.random.default_rng(seed)
    counts = np.clip(np.rint(rng.lognormal(np.log(MEDIAN_WORDS), SIGMA, n)), 3, 400).astype(int)
    neutral = np.array(tiny.NEUTRAL, dtype=object)
    words = neutral[rng.integers(len(neutral), size=int(counts.sum()))]
    ends = np.cumsum(counts)
    rows = []
    for i, (end, count) in enumerate(zip(ends.tolist(), counts.tolist(), strict=True)):
        text = list(words[end - count : end])
        label = "pos" if i % 2 == 0 else "neg"
        text[int(rng.integers(count))] = tiny.POSITIVE[i % 8] if label == "pos" else tiny.NEGATIVE[i % 8]
        rows.append({"text": " ".join(text), "label": label})
    return rows
