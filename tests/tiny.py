"""Tiny models and data built in-process: a WordPiece tokenizer trained on generated sentences and a 2-layer BERT.

Nothing here touches the network. Builds take well under a second.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

POSITIVE = ("good", "great", "excellent", "wonderful", "love", "superb", "delightful", "brilliant")
NEGATIVE = ("bad", "awful", "terrible", "boring", "hate", "dreadful", "poor", "horrible")
NEUTRAL = (
    "film",
    "movie",
    "story",
    "actor",
    "plot",
    "scene",
    "music",
    "ending",
    "the",
    "a",
    "was",
    "is",
    "and",
    "this",
    "that",
    "very",
    "quite",
    "really",
    "with",
    "of",
    "it",
    "director",
    "cast",
    "script",
)


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, 'pos' | 'neg') rows whose label is given by the sentiment words they contain."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 10))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def three_way(n: int, seed: int = 0) -> list[dict]:
    """{'text', 'label'} rows with integer labels: 0 = negative words, 1 = none, 2 = positive words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 3
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 9))]
        if label != 1:
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == 2 else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return rows


COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")
QUESTION = "what color is it?"


def qa_rows(n: int, seed: int = 0, *, words: int = 90, unanswerable_every: int = 0) -> list[dict]:
    """SQuAD-style rows whose answer is the one color word hidden in a long context of filler words.

    Contexts of ~90 words are longer than a 64-token window, so every example spans several windows.
    Every `unanswerable_every`-th row has no color and no answer (SQuAD v2).
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        filler = [rng.choice(NEUTRAL) for _ in range(words)]
        answerable = not unanswerable_every or i % unanswerable_every != unanswerable_every - 1
        answers: dict[str, list] = {"text": [], "answer_start": []}
        if answerable:
            color, position = rng.choice(COLORS), rng.randrange(words)
            filler.insert(position, color)
            start = len(" ".join(filler[:position])) + (1 if position else 0)
            answers = {"text": [color], "answer_start": [start]}
        rows.append({"id": f"q{seed}-{i}", "title": "colors", "context": " ".join(filler), "question": QUESTION,
                     "answers": answers})  # fmt: skip
    return rows


def squad_nested(rows: list[dict], version_2: bool = False) -> dict:
    """The original nested SQuAD JSON layout for flat rows."""
    paragraphs = []
    for row in rows:
        answers = [{"text": t, "answer_start": s} for t, s in zip(*row["answers"].values(), strict=True)]
        qa = {"id": row["id"], "question": row["question"], "answers": answers}
        if version_2:
            qa["is_impossible"] = not answers
        paragraphs.append({"context": row["context"], "qas": [qa]})
    return {"version": "v2.0" if version_2 else "1.1", "data": [{"title": "colors", "paragraphs": paragraphs}]}


NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


LONG_TAIL = "the rest of the talk was about the plot and the music and the cast of this film ."


def dialogues(n: int, seed: int = 0, long: bool = False) -> list[dict]:
    """{'dialogue', 'summary'} rows: the summary names who likes which color, both copied from the dialogue.

    `long` adds a fixed sentence: summaries of 24 tokens, which transformers' default max_length of 20 would cut.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        first, second = rng.sample(NAMES, 2)
        color = rng.choice(COLORS)
        chatter = " ".join(rng.choice(NEUTRAL) for _ in range(rng.randint(3, 8)))
        dialogue = f"{first}: i like the {color} film . {second}: {chatter} ."
        summary = f"{first} likes {color} ." + (f" {LONG_TAIL}" if long else "")
        rows.append({"dialogue": dialogue, "summary": summary})
    return rows


def corpus() -> list[str]:
    rng = random.Random(1)
    words = POSITIVE + NEGATIVE + NEUTRAL + COLORS
    return (
        [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]
        + [t for t, _ in sentences(200)]
        + [QUESTION] * 5
        + [f"{r['dialogue']} {r['summary']} summarize: {r['summary']}" for r in dialogues(100, seed=99, long=True)]
    )


def build_tokenizer(extra_text: list[str] | None = None, single: str = "[CLS] $A [SEP]"):  # -> tokenizer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials)
    tokenizer.train_from_iterator(corpus() + (extra_text or []), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    from tokenizers import decoders

    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def build_encoder(directory: Path, extra_text: list[str] | None = None, dropout: float = 0.1) -> Path:
    """A 2-layer BERT base model (no task head, like a Hub checkpoint) and its tokenizer, saved to `directory`.
    dropout=0: a forward pass that depends on the weights and the batch alone (to compare runs of different shapes)."""
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(extra_text)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_seq2seq(directory: Path, family: str = "bart") -> Path:
    """A 2-layer encoder-decoder, BART-like (labels "[CLS] ... [SEP]", decoding starts at [SEP]) or T5-like
    (labels "... [SEP]", decoding starts at [PAD]; model_type t5), with its tokenizer, saved to `directory`."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    tokenizer = build_tokenizer(single="[CLS] $A [SEP]" if family == "bart" else "$A [SEP]")
    pad, cls, sep = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    if family == "bart":
        config = BartConfig(
            vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128,
            pad_token_id=pad, bos_token_id=cls, eos_token_id=sep, decoder_start_token_id=sep, forced_eos_token_id=sep,
        )  # fmt: skip
        model = BartForConditionalGeneration(config)
    else:
        config = T5Config(
            vocab_size=len(tokenizer), d_model=64, d_kv=32, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2,
            pad_token_id=pad, eos_token_id=sep, decoder_start_token_id=pad,
        )  # fmt: skip
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def without_tokenizer(model: Path, directory: Path) -> Path:
    """A copy of a saved model's config and weights alone: what model.save_pretrained() leaves without the
    tokenizer's save_pretrained."""
    import shutil

    directory.mkdir(parents=True)
    for path in model.iterdir():
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin"):
            shutil.copy2(path, directory / path.name)
    return directory


def model_archive(model: Path, archive: Path, folder: str | None = None) -> Path:
    """model.tar.gz (or an uncompressed model.tar) of a saved model's files, as a SageMaker job's model artifact
    (files at the top), or packed inside one `folder`."""
    import tarfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz" if archive.suffix == ".gz" else "w") as tar:
        for path in sorted(model.iterdir()):
            tar.add(path, arcname=f"{folder}/{path.name}" if folder else path.name)
    return archive


def pickled_weights(model: Path, directory: Path) -> Path:
    """A copy of a saved model whose weights are a pytorch_model.bin that also pickles a Python object (not a tensor):
    what torch's safe (weights_only) loading refuses."""
    import fractions
    import shutil

    import torch
    from safetensors.torch import load_file

    shutil.copytree(model, directory, ignore=shutil.ignore_patterns("*.safetensors"))
    state = {**load_file(str(model / "model.safetensors")), "extra": fractions.Fraction(1, 3)}
    torch.save(state, directory / "pytorch_model.bin")
    return directory


def splits(train: list[dict], evaluation: list[dict] | None = None) -> Any:
    """Raw splits as a task's prepare() takes them: 'train', and 'eval' when given."""
    from datasets import Dataset, DatasetDict

    raw = {"train": Dataset.from_list(train)}
    if evaluation is not None:
        raw["eval"] = Dataset.from_list(evaluation)
    return DatasetDict(raw)
