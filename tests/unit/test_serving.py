"""sm_train/serving/inference.py, the code/inference.py of every model dir: standalone, its span search equal to the
job's (tasks/qa_spans.py) on random logits, and each task's answers and refusals driven as the inference toolkit
drives the module (model_fn, then input_fn -> predict_fn -> output_fn), on tiny models saved here."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from sm_train import deployable
from sm_train.serving import inference
from sm_train.tasks.qa_spans import Windows, best_answers
from tests import tiny

SOURCE = Path(inference.__file__)
TEXTS = ["a wonderful film", "an awful and boring plot", "the story"]
ARGS = SimpleNamespace(bf16=False, fp16=False, per_device_eval_batch_size=2)  # batches of 2: several per request
QA_ARGS = {"doc_stride": 16, "pad_to_max_length": False, "n_best_size": 20, "max_answer_length": 30,
           "version_2_with_negative": False, "null_score_diff_threshold": 0.0}  # fmt: skip


def deploy(model: Any, tokenizer: Any, directory: Path, task: str, max_length: int = 64, **task_args: Any) -> Path:
    """A model dir as a job leaves it: the model, its tokenizer and deployable.make_deployable's code/."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    job_task = SimpleNamespace(name=task, max_length=max_length, args=SimpleNamespace(**task_args))
    deployable.make_deployable(directory, tokenizer.model_input_names, job_task, ARGS)
    return directory


def classifier(directory: Path, labels: list[str], problem_type: str | None = None) -> Path:
    """A tiny text classifier's model dir (untrained head), with these labels and problem_type."""
    from transformers import AutoModelForSequenceClassification

    encoder = tiny.build_encoder(directory.parent / f"{directory.name}-encoder")
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder, num_labels=len(labels), id2label=dict(enumerate(labels)), problem_type=problem_type
    )
    return deploy(model, tiny.build_tokenizer(), directory, "text-classification")


def question_answering(directory: Path) -> Path:
    """A tiny extractive QA model dir (untrained head), windows of 64 tokens with a stride of 16."""
    from transformers import AutoModelForQuestionAnswering

    encoder = tiny.build_encoder(directory.parent / f"{directory.name}-encoder")
    model = AutoModelForQuestionAnswering.from_pretrained(encoder)
    return deploy(model, tiny.build_tokenizer(), directory, "question-answering", **QA_ARGS)


def summarization(directory: Path) -> Path:
    """A tiny BART-like model dir with a prefix (as the job saves T5's) and summaries of up to 8 tokens."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    saved = tiny.build_seq2seq(directory.parent / f"{directory.name}-bart")
    model = AutoModelForSeq2SeqLM.from_pretrained(saved)
    model.config.prefix = "summarize: "
    model.generation_config.max_length = 8
    return deploy(model, AutoTokenizer.from_pretrained(saved), directory, "summarization")


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier(tmp_path_factory.mktemp("serve") / "single", ["neg", "pos", "meh"])


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return question_answering(tmp_path_factory.mktemp("serve") / "qa")


@pytest.fixture(scope="module")
def summarizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return summarization(tmp_path_factory.mktemp("serve") / "summarizer")


def ask(model_dir: Path, body: Any, content_type: str = "application/json", accept: str = "application/json"):
    """One request as the toolkit sends it: the body as bytes, the answer as the JSON text output_fn returns."""
    served = inference.model_fn(str(model_dir))
    data = inference.input_fn(body if isinstance(body, bytes) else json.dumps(body).encode(), content_type)
    return json.loads(inference.output_fn(inference.predict_fn(data, served), accept))


def close(served: Any, expected: Any) -> bool:
    """Equal answers, scores to float noise: a batch pads its rows to the longest, which moves logits by ~1e-7."""
    if isinstance(expected, float):
        return served == pytest.approx(expected, abs=1e-5)
    if isinstance(expected, list | dict) and type(served) is type(expected) and len(served) == len(expected):
        if isinstance(expected, dict):
            return served.keys() == expected.keys() and all(close(served[k], v) for k, v in expected.items())
        return all(close(*pair) for pair in zip(served, expected, strict=True))
    return served == expected


def logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return np.stack([model(**tokenizer(text, return_tensors="pt")).logits[0].numpy() for text in texts])


def test_the_module_stands_alone() -> None:
    """The endpoint has no sm_train, and may run the toolkit on transformers 5 (no pipelines for QA and summaries)."""
    imported, names = set(), set()
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        names |= {node.attr} if isinstance(node, ast.Attribute) else {node.id} if isinstance(node, ast.Name) else set()
    # peft only where model_fn serves an adapter-only model dir (code/requirements.txt names it there)
    assert imported == {"__future__", "contextlib", "inspect", "json", "os", "pathlib", "typing", "numpy", "torch",
                        "transformers", "peft"}  # fmt: skip
    assert "pipeline" not in names and "pipelines" not in names


def test_the_functions_take_what_the_toolkit_passes() -> None:
    """The toolkit passes its context to a function with as many parameters as its own step (model_fn: load's
    model_dir and context), and none to one with a parameter fewer."""
    arity = {name: len(inspect.signature(getattr(inference, name)).parameters)
             for name in ("model_fn", "input_fn", "predict_fn", "output_fn")}  # fmt: skip
    assert arity == {"model_fn": 2, "input_fn": 2, "predict_fn": 2, "output_fn": 2}
    assert not hasattr(inference, "transform_fn")  # it cannot be mixed with the other three


def random_windows(rng: np.random.Generator, examples: int) -> tuple[dict[str, str], Windows, np.ndarray, np.ndarray]:
    """Examples of 1-3 windows each: a question part (no span), a context part with increasing character spans,
    a CLS at 0; logits padded with -100 as Trainer pads them."""
    contexts, ids, cls, lengths, starts, ends = {}, [], [], [], [], []
    for example in range(examples):
        contexts[f"e{example}"] = "".join(rng.choice(list("abcdefgh ")) for _ in range(400))
        for _ in range(rng.integers(1, 4)):
            question, context = int(rng.integers(2, 6)), int(rng.integers(0, 40))
            offset = int(rng.integers(0, 200))
            spans = offset + np.cumsum(rng.integers(1, 5, context))
            ids.append(f"e{example}")
            cls.append(0)
            lengths.append(question + context + 1)
            starts += [-1] * question + list(spans - 1) + [-1]
            ends += [-1] * question + list(spans) + [-1]
    width = max(lengths)
    logits = [np.full((len(lengths), width), -100.0, dtype=np.float32) for _ in range(2)]
    for row, length in enumerate(lengths):
        for found in logits:
            found[row, :length] = rng.normal(size=length).astype(np.float32) * 3
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    windows = Windows(ids, np.array(cls), bounds, np.array(starts, dtype=np.int32), np.array(ends, dtype=np.int32))
    return contexts, windows, *logits


@pytest.mark.parametrize(
    "search",
    [
        {"n_best_size": 20, "max_answer_length": 30, "with_negative": False, "null_score_diff_threshold": 0.0},
        {"n_best_size": 3, "max_answer_length": 2, "with_negative": False, "null_score_diff_threshold": 0.0},
        {"n_best_size": 20, "max_answer_length": 30, "with_negative": True, "null_score_diff_threshold": 0.0},
        {"n_best_size": 5, "max_answer_length": 8, "with_negative": True, "null_score_diff_threshold": 1.5},
    ],
)
def test_the_span_search_is_the_jobs_on_random_logits(search: dict[str, Any]) -> None:
    rng = np.random.default_rng(sum(map(hash, map(str, search.values()))) % 2**32)
    contexts, windows, start_logits, end_logits = random_windows(rng, 300)
    answers, nbest = best_answers(contexts, windows, start_logits, end_logits, **search)
    rows: dict[str, list[tuple]] = {}
    for index, example in enumerate(windows.example_ids):
        first, last = windows.bounds[index], windows.bounds[index + 1]
        spans = windows.span_starts[first:last], windows.span_ends[first:last]
        window = (
            start_logits[index][: last - first],
            end_logits[index][: last - first],
            *spans,
            windows.cls_index[index],
        )
        rows.setdefault(example, []).append(window)
    kinds = set()
    for example, context in contexts.items():
        served = inference.best_span(context, rows[example], **search)
        assert served["answer"] == answers[example]
        assert context[served["start"] : served["end"]] == served["answer"]
        if served["answer"]:
            best = nbest[example][0]
            assert (served["score"], served["start"], served["end"]) == (best["score"], best["start"], best["end"])
        kinds.add(bool(served["answer"]))
    assert True in kinds and (False in kinds or not search["with_negative"])  # answers, and the null rule at work


def test_classification_labels_top_k_and_pairs(single: Path) -> None:
    expected = logits(single, TEXTS)
    labels = np.array(["neg", "pos", "meh"])
    served = ask(single, {"inputs": TEXTS})
    assert [a["label"] for a in served] == list(labels[expected.argmax(axis=1)])
    assert close(ask(single, {"inputs": TEXTS[0]}), served[:1])
    ranked = ask(single, {"inputs": TEXTS[:2], "parameters": {"top_k": 5}})
    assert [[a["label"] for a in one] for one in ranked] == [list(labels[np.argsort(-row)]) for row in expected[:2]]
    assert sum(a["score"] for a in ranked[0]) == pytest.approx(1.0)
    pair = ask(single, {"inputs": {"text": "a film", "text_pair": "the plot"}})
    mixed = ask(single, {"inputs": ["a film", {"text": "a film", "text_pair": "the plot"}]})
    assert mixed[1] == pair[0] and len(mixed) == 2


def test_regression_gives_the_score(tmp_path: Path) -> None:
    model_dir = classifier(tmp_path / "regression", ["LABEL_0"], problem_type="regression")
    served = ask(model_dir, {"inputs": TEXTS})
    assert [a["score"] for a in served] == pytest.approx(list(logits(model_dir, TEXTS)[:, 0]), abs=1e-5)
    assert close(ask(model_dir, {"inputs": TEXTS[0]}), served[:1]) and list(served[0]) == ["score"]


def test_multi_label_gives_every_label_over_the_threshold(tmp_path: Path) -> None:
    model_dir = classifier(tmp_path / "multi", ["a", "b", "c"], problem_type="multi_label_classification")
    probabilities = 1 / (1 + np.exp(-logits(model_dir, TEXTS)))
    everything = ask(model_dir, {"inputs": TEXTS, "parameters": {"threshold": 0}})
    assert [[a["score"] for a in one] for one in everything] == [
        pytest.approx(sorted(row, reverse=True), abs=1e-5) for row in probabilities
    ]
    middle = float(np.median(probabilities[0]))
    over = ask(model_dir, {"inputs": TEXTS[0], "parameters": {"threshold": middle}})
    assert [a["label"] for a in over] == [everything[0][0]["label"]]
    assert ask(model_dir, {"inputs": TEXTS, "parameters": {"threshold": 1}}) == [[], [], []]
    assert close(ask(model_dir, {"inputs": TEXTS[1]}), [a for a in everything[1] if a["score"] > 0.5])


def test_question_answering_windows_long_contexts(reader: Path) -> None:
    long = tiny.qa_rows(1, seed=2, words=120)[0]
    served = ask(reader, {"inputs": [{"question": long["question"], "context": long["context"]}] * 3})
    assert close(served[1], served[0]) and close(served[2], served[0])
    assert set(served[0]) == {"answer", "score", "start", "end"}
    assert long["context"][served[0]["start"] : served[0]["end"]] == served[0]["answer"]
    assert close(ask(reader, {"inputs": {"question": long["question"], "context": long["context"]}}), served[0])


def test_summaries_use_the_prefix_and_the_saved_generation_config(summarizer: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(summarizer)
    model = AutoModelForSeq2SeqLM.from_pretrained(summarizer)
    texts = ["erin: i like the red film .", "bob: the plot was quite the story ."]
    expected = [tokenizer.decode(model.generate(**tokenizer([f"summarize: {t}"], return_tensors="pt"))[0],
                                 skip_special_tokens=True).strip() for t in texts]  # fmt: skip
    assert ask(summarizer, {"inputs": texts}) == [{"summary_text": s} for s in expected]
    assert ask(summarizer, {"inputs": texts[0]}) == [{"summary_text": expected[0]}]
    longer = ask(summarizer, {"inputs": texts[0], "parameters": {"max_new_tokens": 20, "num_beams": 2}})
    assert len(longer[0]["summary_text"]) >= len(expected[0])


LONG_QUESTION = " ".join(["what color is it"] * 20)


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        ("single", b"{not json", r"^The request body is not JSON \("),
        ("single", ["a"], r'^The request body must be a JSON object with "inputs"'),
        ("single", {"text": "a"}, r'^The request body must be a JSON object with "inputs"'),
        ("single", {"inputs": "a", "parameters": [1]}, r'^"parameters" must be a JSON object, got list\.$'),
        ("single", {"inputs": []}, r'^"inputs" must be a text, .* or a non-empty list of them, got list\.$'),
        ("single", {"inputs": ["a", 3]}, r"^inputs\[1\] must be a text, .*, got int\.$"),
        ("single", {"inputs": {"text_pair": "a"}}, r'^inputs has no "text"\.$'),
        ("single", {"inputs": "a", "parameters": {"top_k": 0}}, r'^"top_k" must be a positive integer, got 0\.$'),
        ("single", {"inputs": "a", "parameters": {"threshold": 0.2}},
         r"^Unknown parameters \['threshold'\] for text-classification \(single_label_classification\); the "
         r'parameters it takes: "top_k"\.$'),
        ("reader", {"inputs": {"question": "what?"}}, r'^inputs has no "context"\.$'),
        ("reader", {"inputs": [{"question": "q", "context": " "}]},
         r"""^inputs\[0\]: "context" must be a non-empty string, got ' '\.$"""),
        ("reader", {"inputs": "what?"}, r'^"inputs" must be \{"question": ..., "context": ...\} or a non-empty'),
        ("reader", {"inputs": {"question": "q", "context": "c"}, "parameters": {"top_k": 2}},
         r"^Unknown parameters \['top_k'\] for question-answering; the parameters it takes: none"),
        ("reader", {"inputs": {"question": LONG_QUESTION, "context": "red"}},
         r"^inputs: the question is 80 tokens long; with the job's max_seq_length=64 and doc_stride=16 a question "
         r"may have at most 44 tokens\. Shorten the question\.$"),
        ("summarizer", {"inputs": {"text": "a"}}, r'^"inputs" must be a text or a non-empty list of them, got dict'),
        ("summarizer", {"inputs": "a", "parameters": {"beams": 2}}, r"^Unknown generation parameters \['beams'\]"),
    ],
)  # fmt: skip
def test_bad_requests_say_what_is_wrong(request_fixture: Any, model: str, body: Any, message: str) -> None:
    with pytest.raises(inference.RequestError, match=message):
        ask(request_fixture(model), body)


@pytest.fixture
def request_fixture(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue


def test_content_and_accept_types_and_a_model_dir_without_settings(single: Path, tmp_path: Path) -> None:
    with pytest.raises(
        inference.RequestError, match=r"^Content type 'text/csv' is not supported: send application/json"
    ):
        ask(single, {"inputs": "a"}, content_type="text/csv")
    with pytest.raises(inference.RequestError, match=r"^Accept type 'text/csv' is not supported"):
        ask(single, {"inputs": "a"}, accept="text/csv")
    assert ask(single, {"inputs": "a"}, content_type="application/json; charset=utf-8", accept="*/*")
    with pytest.raises(FileNotFoundError, match=r"serving.json is missing: this code/inference.py serves a model dir"):
        inference.model_fn(str(tmp_path))


def test_make_deployable_writes_the_module_and_the_jobs_settings(single: Path, tmp_path: Path) -> None:
    assert (single / "code" / "inference.py").read_bytes() == SOURCE.read_bytes()
    assert sorted(p.name for p in (single / "code").iterdir()) == ["inference.py", "serving.json"]
    task = SimpleNamespace(name="question-answering", max_length=256, args=SimpleNamespace(**QA_ARGS))
    args = SimpleNamespace(bf16=True, fp16=False, bf16_full_eval=False, per_device_eval_batch_size=16)
    (tmp_path / "config.json").write_text("{}")
    deployable.write_serving(tmp_path, task, args)
    settings = json.loads((tmp_path / "code" / "serving.json").read_text())
    assert settings.pop("versions").keys() == {"sm_train", "transformers", "torch"}
    assert settings == {"task": "question-answering", "max_seq_length": 256, **QA_ARGS, "precision": "bf16",
                        "full_eval": False, "batch_size": 16}  # fmt: skip
    custom = tmp_path / "custom"
    custom.mkdir()
    deployable.write_serving(custom, SimpleNamespace(name="my-task"), args)
    assert not (custom / "code").exists()  # a task shipped in source_dir serves its own way


@pytest.mark.gpu
def test_on_a_gpu_the_trained_precision_autocasts_and_labels_stay(single: Path, tmp_path: Path) -> None:
    import shutil

    model_dir = Path(shutil.copytree(single, tmp_path / "bf16"))
    settings = json.loads((model_dir / "code" / "serving.json").read_text()) | {"precision": "bf16"}
    (model_dir / "code" / "serving.json").write_text(json.dumps(settings))
    served = inference.model_fn(str(model_dir))
    assert served.device.type == "cuda" and served.half is torch.bfloat16
    ranked = ask(model_dir, {"inputs": TEXTS, "parameters": {"top_k": 3}})
    exact = ask(single, {"inputs": TEXTS, "parameters": {"top_k": 3}})  # fp32 on the same GPU
    for half, full in zip(ranked, exact, strict=True):
        assert {a["label"]: a["score"] for a in half} == pytest.approx(
            {a["label"]: a["score"] for a in full}, abs=2e-2
        )
