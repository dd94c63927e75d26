"""models.py: local model paths (archives unpacked, folders described without listing unrelated files), the tokenizer
checked against the model's files and embeddings, and refused pickled weights named."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from sm_train import models
from sm_train.errors import ConfigError
from tests import tiny


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for the test: archives unpack below it."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


# --- the model path -------------------------------------------------------------------------------------------------


def test_a_folder_without_config_does_not_list_unrelated_files(tmp_path: Path) -> None:
    """model_name_or_path=../../etc is refused without copying /etc's listing into the reason."""
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("passwd", "shadow", "hosts"):
        (folder / name).write_text("secret")
    (folder / "ssh").mkdir()
    with pytest.raises(ConfigError) as raised:
        models.check_model_path(str(folder))
    message = str(raised.value)
    assert "has no config.json (no model files in it)" in message
    assert not any(name in message for name in ("passwd", "shadow", "hosts", "ssh"))
    # Model-like files are named; a subfolder holding a model is offered.
    (folder / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"\(found: pytorch_model.bin\)"):
        models.check_model_path(str(folder))
    (folder / "ssh" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=rf"\(did you mean {folder / 'ssh'}\?\)"):
        models.check_model_path(str(folder))


def test_a_model_archive_is_unpacked_and_used(tmp_path: Path, scratch: Path, tiny_encoder: Path) -> None:
    channel = tmp_path / "channel"
    tiny.model_archive(tiny_encoder, channel / "model.tar.gz")
    resolved = Path(models.check_model_path(str(channel)))
    assert resolved.parent.parent == scratch and (resolved / "config.json").is_file()
    assert len(models.load_tokenizer(str(resolved))) == len(models.load_tokenizer(str(tiny_encoder)))
    # The archive file itself, and a model packed inside one folder.
    packed = tiny.model_archive(tiny_encoder, tmp_path / "packed.tar.gz", folder="my-model")
    assert Path(models.check_model_path(str(packed))).name == "my-model"
    # A saved model folder is used as it is.
    assert models.check_model_path(str(tiny_encoder)) == str(tiny_encoder)


def test_an_archive_without_a_model_names_the_archive(tmp_path: Path, scratch: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a model")
    archive = tiny.model_archive(tmp_path / "notes", tmp_path / "channel" / "model.tar.gz")
    with pytest.raises(ConfigError, match=rf"The model archive {archive} \(unpacked into .*\) has no config.json"):
        models.check_model_path(str(archive.parent))


# --- the tokenizer --------------------------------------------------------------------------------------------------


def test_a_model_saved_without_its_tokenizer_is_refused(tmp_path: Path, tiny_encoder: Path) -> None:
    """Only config.json and the weights: transformers would build a tokenizer of its 5 special tokens."""
    bare = tiny.without_tokenizer(tiny_encoder, tmp_path / "bare")
    with pytest.raises(ConfigError) as raised:
        models.load_tokenizer(str(bare))
    message = str(raised.value)
    assert message.startswith(
        f"model_name_or_path={str(bare)!r} has no tokenizer files (found: config.json, model.safetensors)"
    )
    assert "tokenizer.save_pretrained(folder)" in message and "set tokenizer_name" in message
    # tokenizer_config.json alone is not a tokenizer either.
    shutil.copy2(tiny_encoder / "tokenizer_config.json", bare)
    with pytest.raises(ConfigError, match=r"has no tokenizer files \(found: config.json, model.safetensors, tok"):
        models.load_tokenizer(str(bare))
    # The tokenizer given apart, or saved beside the model: it loads.
    assert len(models.load_tokenizer(str(bare), tokenizer_name=str(tiny_encoder))) > 200
    shutil.copy2(tiny_encoder / "tokenizer.json", bare)
    assert len(models.load_tokenizer(str(bare))) > 200


def test_a_vocabulary_file_is_a_tokenizer(tmp_path: Path, tiny_encoder: Path) -> None:
    """A BERT checkpoint of the older kind: vocab.txt, no tokenizer.json."""
    bare = tiny.without_tokenizer(tiny_encoder, tmp_path / "bare")
    vocabulary = models.load_tokenizer(str(tiny_encoder)).get_vocab()
    (bare / "vocab.txt").write_text("".join(f"{token}\n" for token in sorted(vocabulary, key=vocabulary.get)))
    assert len(models.load_tokenizer(str(bare))) == len(vocabulary)


def test_a_byte_level_tokenizer_needs_no_vocabulary(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    models._check_tokenizer_files(tmp_path, "x", "fix")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(ConfigError, match="x has no tokenizer files"):
        models._check_tokenizer_files(tmp_path, "x", "fix")


def test_tokenizer_name_must_be_a_tokenizer(tmp_path: Path, tiny_encoder: Path) -> None:
    with pytest.raises(
        ConfigError, match=rf"tokenizer_name='{tmp_path / 'nope'}' does not exist. Point tokenizer_name"
    ):
        models.load_tokenizer(str(tiny_encoder), tokenizer_name=str(tmp_path / "nope"))
    bare = tiny.without_tokenizer(tiny_encoder, tmp_path / "bare")
    with pytest.raises(ConfigError, match=rf"tokenizer_name='{bare}' has no tokenizer files .* Point tokenizer_name"):
        models.load_tokenizer(str(tiny_encoder), tokenizer_name=str(bare))


def test_an_empty_tokenizer_is_refused_after_loading(tmp_path: Path, tiny_encoder: Path) -> None:
    """tokenizer.json present, but nothing in it besides the special tokens: every word would be unknown."""
    from tokenizers import Tokenizer
    from tokenizers import models as token_models
    from transformers import PreTrainedTokenizerFast

    specials = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    empty = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(token_models.WordLevel(specials, unk_token="[UNK]")),
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    empty.save_pretrained(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"tokenizer_name='.*empty' holds 5 tokens, 0 of them not special: every"):
        models.load_tokenizer(str(tiny_encoder), tokenizer_name=str(tmp_path / "empty"))
    assert len(models.load_tokenizer(str(tiny_encoder), tokenizer_name=str(tiny_encoder))) > 200


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tmp_path: Path, tiny_encoder: Path) -> None:
    """Token ids past the model's embedding rows would crash the first training step (IndexError)."""
    tokenizer = models.load_tokenizer(str(tiny_encoder))
    rows = len(tokenizer)
    tokenizer.add_tokens(["newtoken1", "newtoken2"])
    tokenizer.save_pretrained(tmp_path / "bigger")
    with pytest.raises(ConfigError) as raised:
        models.load_tokenizer(str(tiny_encoder), tokenizer_name=str(tmp_path / "bigger"))
    message = str(raised.value)
    assert f"holds {rows + 2} tokens, more than the {rows} token embeddings of the model" in message
    assert "Use the model's own tokenizer" in message and "resize_token_embeddings" in message
    # One row more in the model's config: it fits.
    model = tmp_path / "model"
    shutil.copytree(tiny_encoder, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "vocab_size": rows + 2}))
    assert len(models.load_tokenizer(str(model), tokenizer_name=str(tmp_path / "bigger"))) == rows + 2


def test_the_embedding_rows_of_an_encoder_decoder() -> None:
    from transformers import BertConfig, EncoderDecoderConfig, T5Config

    pair = EncoderDecoderConfig.from_encoder_decoder_configs(BertConfig(vocab_size=500), BertConfig(vocab_size=400))
    assert models._embedding_rows(pair) == 400
    assert models._embedding_rows(T5Config(vocab_size=320)) == 320
    assert models._embedding_rows(object()) is None


# --- the weights ----------------------------------------------------------------------------------------------------


def test_refused_pickled_weights_name_the_file_and_never_advise_unsafe_loading(tmp_path: Path, tiny_encoder) -> None:
    from transformers import AutoModelForSequenceClassification

    model = tiny.pickled_weights(tiny_encoder, tmp_path / "pickled")
    (model / "training_args.bin").write_bytes(b"not the weights")
    with pytest.raises(ConfigError) as raised:
        models.load(AutoModelForSequenceClassification, str(model), "model")
    message = str(raised.value)
    assert message.startswith(
        f"{model / 'pytorch_model.bin'} holds Python objects that PyTorch's safe loading refuses to unpickle "
        "(fractions.Fraction)"
    )
    assert "save_pretrained(folder, safe_serialization=True)" in message and "safetensors" in message
    assert "weights_only=False" not in message and "add_safe_globals" not in message
    # The same model with its safetensors weights loads.
    assert models.load(AutoModelForSequenceClassification, str(tiny_encoder), "model") is not None
