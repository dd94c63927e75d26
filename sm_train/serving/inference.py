"""Serves a model dir that sm_train wrote: the SageMaker Hugging Face inference toolkit loads this file from the
model dir as code/inference.py and calls model_fn once, then input_fn, predict_fn and output_fn for each request.

It stands alone (torch, numpy and transformers 4.46+ or 5.x, as every Hugging Face inference image has them), loads
the model with the Auto classes, not pipeline() (transformers 5 removed the summarization and question-answering
pipelines), and answers as the job's evaluation did, with the settings the job saved beside it in serving.json:
the same token limits and windows, the same span search and "no answer" rule, the same generation settings.

A model dir of a LoRA adapter alone (merge_adapters=false) is served as its base model with the adapter merged in:
that needs peft (code/requirements.txt names it) and the base model (adapter_model).

A request is JSON, {"inputs": ..., "parameters": {...}}. One that cannot be answered raises RequestError (a
ValueError); the toolkit answers it with status 400 and the message.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import transformers

SETTINGS = "serving.json"  # in the model dir's code/, written by the job
JSON = "application/json"
MODELS = {
    "text-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "summarization": "AutoModelForSeq2SeqLM",
}
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
BASE_MODEL = "SM_TRAIN_BASE_MODEL"  # in the endpoint's environment: the base model of an adapter-only model dir


class RequestError(ValueError):
    """A request this model cannot answer, and what to send instead."""


class Served(NamedTuple):
    """What model_fn loads once: the model on its device, its tokenizer and the job's settings."""

    task: str
    model: Any
    tokenizer: Any
    settings: dict[str, Any]
    device: torch.device
    half: torch.dtype | None  # autocast dtype on a GPU, as the job trained and evaluated (bf16/fp16)
    inputs: frozenset[str]  # the names the model's forward takes (Trainer passes only those)


def model_fn(model_dir: str, context: Any = None) -> Served:
    """The model, its tokenizer and the job's settings, on the device chosen once: the GPU the model server gives
    this worker (context's gpu_id), else the CPU."""
    path = Path(model_dir) / "code" / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this code/inference.py serves a model dir written by sm_train.")
    settings = json.loads(path.read_text(encoding="utf-8"))
    task = settings.get("task")
    if task not in MODELS:
        raise ValueError(f"{path} names task {task!r}; this module serves {', '.join(MODELS)}.")
    device = torch.device("cpu")
    if torch.cuda.is_available():
        properties = getattr(context, "system_properties", None) or {}
        device = torch.device("cuda", int(properties.get("gpu_id") or 0))
    half = HALF.get(settings.get("precision")) if device.type == "cuda" else None
    if half is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        half = None  # bf16 trained, served in fp32 here: fp16 could overflow where bf16 did not
    weights = half if half is not None and settings.get("full_eval") else torch.float32
    auto = getattr(transformers, MODELS[task])
    adapter = (Path(model_dir) / "adapter_config.json").is_file()  # merge_adapters=false: no model weights
    model = adapter_model(Path(model_dir), settings, auto, weights) if adapter else auto.from_pretrained(model_dir)
    model = model.to(device=device, dtype=weights).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    names = frozenset(inspect.signature(model.forward).parameters)
    return Served(task, model, tokenizer, settings, device, half, names)


def adapter_model(model_dir: Path, settings: dict[str, Any], auto: Any, dtype: torch.dtype) -> Any:
    """An adapter-only model dir (adapter_config.json, the LoRA weights with the trained head, no model weights): the
    base model built with the model dir's config.json (its labels and head shapes), the adapter merged in (no LoRA
    step per request). The base: SM_TRAIN_BASE_MODEL in the endpoint's environment, else serving.json's base_model,
    else the adapter's base_model_name_or_path; a folder (a relative one inside the model dir) or a Hub model id."""
    try:
        import peft
    except ImportError as e:
        raise ImportError(
            f"{model_dir} holds a LoRA adapter without its base model's weights: serving it needs the peft package "
            f"({e}). The model dir's code/requirements.txt names it, which the inference toolkit installs when the "
            "endpoint starts (without internet access: an image with peft). Or deploy a merged model: train with "
            "merge_adapters=true."
        ) from None
    adapter = json.loads((model_dir / "adapter_config.json").read_text(encoding="utf-8"))
    endpoint = os.environ.get(BASE_MODEL)  # noqa: TID251 (the endpoint's environment: sm_train's env.py is not here)
    base = endpoint or settings.get("base_model") or adapter.get("base_model_name_or_path") or ""
    if base and (model_dir / base).is_dir():
        base = str(model_dir / base)
    elif not base or base.startswith(("/", ".", "~")) or base.count("/") > 1:  # a path, not a Hub id
        raise FileNotFoundError(
            f"The adapter's base model {base!r} is not a folder on this endpoint. Set {BASE_MODEL} in the endpoint's "
            "environment (or base_model in code/serving.json) to the base's Hub model id or to a folder inside the "
            "model dir that holds it, or deploy a merged model: train with merge_adapters=true."
        )
    config = transformers.AutoConfig.from_pretrained(model_dir)
    model = peft.PeftModel.from_pretrained(auto.from_pretrained(base, config=config).to(dtype=dtype), model_dir)
    model = model.merge_and_unload()
    if (model_dir / "generation_config.json").is_file():  # the job's generation settings, not the base model's
        model.generation_config = transformers.GenerationConfig.from_pretrained(model_dir)
    return model


def input_fn(input_data: str | bytes, content_type: str | None) -> dict[str, Any]:
    """The request body as {"inputs": ..., "parameters": {...}}."""
    if (content_type or JSON).split(";")[0].strip().lower() != JSON:
        raise RequestError(f"Content type {content_type!r} is not supported: send {JSON}.")
    try:
        body = json.loads(input_data)
    except ValueError as e:  # UnicodeDecodeError too
        raise RequestError(f"The request body is not JSON ({e}).") from None
    if not isinstance(body, dict) or "inputs" not in body:
        raise RequestError('The request body must be a JSON object with "inputs" (and optionally "parameters").')
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(f'"parameters" must be a JSON object, got {type(parameters).__name__}.')
    return {"inputs": body["inputs"], "parameters": parameters}


def predict_fn(data: dict[str, Any], model: Served) -> Any:
    if not isinstance(data, dict) or "inputs" not in data:
        raise RequestError('The request has no "inputs".')
    autocast = torch.autocast(model.device.type, dtype=model.half) if model.half else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        return TASKS[model.task](model, data["inputs"], data.get("parameters") or {})


def output_fn(prediction: Any, accept: str | None) -> str:
    if (accept or JSON).split(";")[0].strip().lower() not in (JSON, "*/*"):
        raise RequestError(f"Accept type {accept!r} is not supported: ask for {JSON}.")
    return json.dumps(prediction, ensure_ascii=False)


def classify(served: Served, inputs: Any, parameters: dict[str, Any]) -> list[Any]:
    """Labels (top_k of them, default 1), every label above threshold (multi-label), or scores (regression)."""
    config = served.model.config
    problem = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    accepted = {"regression": (), "multi_label_classification": ("threshold",)}.get(problem, ("top_k",))
    _accept(parameters, accepted, f"{served.task} ({problem})")
    rows, single = _rows(inputs, (str, dict), 'a text, {"text": ..., "text_pair": ...}')
    features = []
    for where, row in rows:
        text, pair = (row, None) if isinstance(row, str) else (_text(row, "text", where), row.get("text_pair"))
        if pair is not None:
            pair = _text(row, "text_pair", where)
        features.append(served.tokenizer(text, pair, truncation=True, max_length=served.settings["max_seq_length"]))
    logits = np.concatenate(
        [served.model(**batch).logits.float().cpu().numpy() for batch in _batches(served, features)]
    )
    labels = [config.id2label[i] for i in range(logits.shape[1])]
    if problem == "regression":
        return [{"score": float(row[0])} if len(row) == 1 else {"scores": row.tolist()} for row in logits]
    if problem == "multi_label_classification":
        limit = parameters.get("threshold", 0.5)
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1:
            raise RequestError(f'"threshold" must be a number from 0 to 1, got {limit!r}.')
        probabilities = 1 / (1 + np.exp(-logits))
        found = [[{"label": labels[j], "score": float(p[j])} for j in np.argsort(-p, kind="stable") if p[j] > limit]
                 for p in probabilities]  # fmt: skip
        return found[0] if single else found
    top_k = parameters.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(f'"top_k" must be a positive integer, got {top_k!r}.')
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    ranked = [[{"label": labels[j], "score": float(p[j])} for j in np.argsort(-p, kind="stable")[: top_k or 1]]
              for p in probabilities]  # fmt: skip
    if top_k is None:  # as the text-classification pipeline: the best label of each input
        return [best for best, *_ in ranked]
    return ranked[0] if single else ranked


def answer(served: Served, inputs: Any, parameters: dict[str, Any]) -> Any:
    """The answer of each question, found in its context's windows as the job's evaluation found it."""
    _accept(parameters, (), served.task)
    rows, single = _rows(inputs, (dict,), '{"question": ..., "context": ...}')
    settings, tokenizer = served.settings, served.tokenizer
    questions = [_text(row, "question", where, blank=False).lstrip() for where, row in rows]
    contexts = [_text(row, "context", where, blank=False) for where, row in rows]
    limit, stride = settings["max_seq_length"], settings["doc_stride"]
    room = limit - tokenizer.num_special_tokens_to_add(pair=True) - stride - 1  # question tokens that fit
    for (where, _), ids in zip(rows, tokenizer(questions, add_special_tokens=False)["input_ids"], strict=True):
        if len(ids) > room:  # the tokenizer would panic (a Rust panic: no Python exception to answer with)
            raise RequestError(
                f"{where}: the question is {len(ids)} tokens long; with the job's max_seq_length={limit} and "
                f"doc_stride={stride} a question may have at most {max(room, 0)} tokens. Shorten the question."
            )
    right = tokenizer.padding_side == "right"
    encoded = tokenizer(
        questions if right else contexts,
        contexts if right else questions,
        truncation="only_second" if right else "only_first",
        max_length=limit,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if settings.get("pad_to_max_length") else False,
    )
    spans, features = [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        in_context = [s == (1 if right else 0) for s in encoded.sequence_ids(i)]
        spans.append(np.array([o if inside else (-1, -1) for o, inside in zip(offsets, in_context, strict=True)]))
        features.append({name: encoded[name][i] for name in encoded})  # the model's inputs kept by _batches
    windows: list[list[tuple]] = [[] for _ in rows]
    done = 0
    for batch in _batches(served, features):
        output = served.model(**batch)
        logits = (output.start_logits.float().cpu().numpy(), output.end_logits.float().cpu().numpy())
        for starts, ends in zip(*logits, strict=True):
            ids, span = encoded["input_ids"][done], spans[done]
            kept = slice(None, len(ids)) if right else slice(len(starts) - len(ids), None)  # without the padding
            cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            example = encoded["overflow_to_sample_mapping"][done]
            windows[example].append((starts[kept], ends[kept], span[:, 0], span[:, 1], cls))
            done += 1
    search = {key: settings[key] for key in ("n_best_size", "max_answer_length", "null_score_diff_threshold")}
    answers = [best_span(context, its, with_negative=settings["version_2_with_negative"], **search)
               for context, its in zip(contexts, windows, strict=True)]  # fmt: skip
    return answers[0] if single else answers


def best_span(context: str, windows: list[tuple], *, n_best_size: int, max_answer_length: int, with_negative: bool,
              null_score_diff_threshold: float) -> dict[str, Any]:  # fmt: skip
    """One question's answer from its windows, each (start logits, end logits, the tokens' character starts and ends
    in the context, -1 outside it, the CLS position): the best-scoring span (start + end logit) inside the context, in
    order and at most max_answer_length tokens, among the n best starts and ends of each window; "" (start = end = 0,
    the null score) when none, or, with negatives, when the null score (CLS start and end) beats it by more than
    null_score_diff_threshold. The job's evaluation searches so (sm_train's tasks/qa_spans.py, best_answers); its
    tests hold the two equal on random logits."""
    candidates: list[tuple[float, int, int]] = []
    null_score = float("inf")
    for window in windows:
        starts, ends, span_starts, span_ends, cls = window
        null_score = min(null_score, float(starts[cls] + ends[cls]))
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
    best_score = candidates[0][0] if candidates else float("-inf")
    if not candidates or (with_negative and null_score - best_score > null_score_diff_threshold):
        return {"answer": "", "score": null_score, "start": 0, "end": 0}
    score, start, end = candidates[0]
    return {"answer": context[start:end], "score": score, "start": start, "end": end}


def summarize(served: Served, inputs: Any, parameters: dict[str, Any]) -> list[dict[str, str]]:
    """Summaries with the saved generation config (the job's evaluation settings), parameters overriding it."""
    generation = served.model.generation_config
    unknown = sorted(k for k in parameters if not hasattr(generation, k) or callable(getattr(generation, k)))
    if unknown:
        raise RequestError(
            f"Unknown generation parameters {unknown}: summarization takes generate()'s settings, such as "
            "max_new_tokens, num_beams, do_sample, temperature."
        )
    rows, _ = _rows(inputs, (str,), "a text")
    prefix, limit = served.settings.get("prefix") or "", served.settings["max_source_length"]
    features = [served.tokenizer(prefix + text, max_length=limit, truncation=True) for _, text in rows]
    summaries: list[str] = []
    for batch in _batches(served, features):
        try:
            # given, not left to generate(): 4.x would rebuild a config marked _from_model_config from config.json
            generated = served.model.generate(**batch, generation_config=generation, **parameters)
        except (ValueError, TypeError) as e:  # generate's own check of the values
            raise RequestError(f"The generation parameters were refused: {e}") from None
        summaries += [text.strip() for text in served.tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return [{"summary_text": summary} for summary in summaries]


TASKS = {"text-classification": classify, "question-answering": answer, "summarization": summarize}


def _batches(served: Served, features: list[Any]) -> Any:
    """The features padded into batches of the job's evaluation batch size, on the model's device."""
    size = served.settings.get("batch_size") or 8
    for first in range(0, len(features), size):
        chosen = [{k: v for k, v in f.items() if k in served.inputs} for f in features[first : first + size]]
        batch = served.tokenizer.pad(chosen, return_tensors="pt")
        yield {name: tensor.to(served.device) for name, tensor in batch.items()}


def _rows(inputs: Any, kinds: tuple[type, ...], shape: str) -> tuple[list[tuple[str, Any]], bool]:
    """(where, row) for one input or a list of them, and whether it was one."""
    single = isinstance(inputs, kinds)
    rows = [inputs] if single else inputs
    if not isinstance(rows, list) or not rows:
        raise RequestError(f'"inputs" must be {shape} or a non-empty list of them, got {_kind(inputs)}.')
    found = [("inputs" if single else f"inputs[{i}]", row) for i, row in enumerate(rows)]
    for where, row in found:
        if not isinstance(row, kinds):
            raise RequestError(f"{where} must be {shape}, got {_kind(row)}.")
    return found, single


def _text(row: dict[str, Any], key: str, where: str, blank: bool = True) -> str:
    if key not in row:
        raise RequestError(f'{where} has no "{key}".')
    value = row[key]
    if not isinstance(value, str) or (not blank and not value.strip()):
        raise RequestError(f'{where}: "{key}" must be a non-empty string, got {_kind(value)}.')
    return value


def _accept(parameters: dict[str, Any], names: tuple[str, ...], task: str) -> None:
    unknown = sorted(set(parameters) - set(names))
    if unknown:
        takes = ", ".join(f'"{name}"' for name in names) or "none (its settings are the job's)"
        raise RequestError(f"Unknown parameters {unknown} for {task}; the parameters it takes: {takes}.")


def _kind(value: Any) -> str:
    return repr(value) if isinstance(value, str) and not value.strip() else type(value).__name__
