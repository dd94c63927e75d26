"""The model dir made deployable as it is: files that are not the model removed, the tokenizer loadable by the
transformers 4.x of the inference images, and the serving module (code/inference.py with the job's settings in
code/serving.json; for an adapter-only LoRA model, peft in code/requirements.txt and the base model named)."""

from __future__ import annotations

import json
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

from sm_train.outputs import versions, write_json

logger = logging.getLogger(__name__)

# Written by Trainer.save_model but not part of a deployable model: a pickle of the arguments (hub_token included).
NOT_DEPLOYABLE = ("training_args.bin",)


def make_deployable(model_dir: Path, model_input_names: list[str], task: Any, args: Any) -> None:
    """Remove non-model files, make the tokenizer load on transformers 4.x as it ran in training, and write the
    serving module for the job's task and training arguments (write_serving).

    transformers 5 saves `"tokenizer_class": "TokenizersBackend"`, which 4.57 (the SageMaker inference toolkit's
    transformers) cannot load; PreTrainedTokenizerFast reads the same tokenizer.json on both. 4.57 also defaults its
    model_input_names to include token_type_ids, which models such as DistilBERT reject and which BERT did not see in
    training here: the names the training tokenizer used are written down.
    """
    for name in NOT_DEPLOYABLE:
        (model_dir / name).unlink(missing_ok=True)
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        tokenizer_class = config.get("tokenizer_class") or ""
        if tokenizer_class.endswith("Backend") and (model_dir / "tokenizer.json").is_file():
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
            logger.info("tokenizer_class %s written as PreTrainedTokenizerFast for transformers 4.x", tokenizer_class)
        config.setdefault("model_input_names", list(model_input_names))
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_serving(model_dir, task, args)


# The settings code/inference.py answers with, by their hyperparameter names: the token limit (the task's
# max_length, the model's limit applied) and each task's own.
SERVED = {
    "text-classification": ("max_seq_length", ()),
    "question-answering": ("max_seq_length", ("doc_stride", "pad_to_max_length", "n_best_size", "max_answer_length",
                                              "version_2_with_negative", "null_score_diff_threshold")),
    "summarization": ("max_source_length", ()),
}  # fmt: skip


def write_serving(model_dir: Path, task: Any, args: Any) -> None:
    """code/inference.py (sm_train/serving/inference.py as it is: the toolkit loads it in place of its pipeline) and
    code/serving.json, the settings the job's evaluation used: token limits, QA windows and span search, the T5
    prefix (config.json's), the precision and evaluation batch size. No code/requirements.txt: the module needs
    only what every Hugging Face inference image has, and the toolkit would pip-install it at each start; but an
    adapter-only model dir (merge_adapters=false) needs peft and its base model (serving_adapter)."""
    if task.name not in SERVED:
        logger.info("task %s: no code/inference.py (it serves the shipped tasks only)", task.name)
        return
    limit, names = SERVED[task.name]
    half = "bf16" if args.bf16 else "fp16" if args.fp16 else None
    settings = {"task": task.name, limit: task.max_length, **{name: getattr(task.args, name) for name in names}}
    if task.name == "summarization":  # config.json's prefix (T5's "summarize: "), which the job's inputs carried
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        settings["prefix"] = config.get("prefix") or ""
    settings |= {
        "precision": half or "fp32",
        "full_eval": bool(half and getattr(args, f"{half}_full_eval", False)),
        "batch_size": args.per_device_eval_batch_size,
        "versions": {k: v for k, v in versions().items() if k in ("sm_train", "transformers", "torch")},
    }
    source = (resources.files("sm_train") / "serving" / "inference.py").read_text(encoding="utf-8")
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(source, encoding="utf-8")
    if (model_dir / "adapter_config.json").is_file():
        settings["base_model"] = serving_adapter(model_dir)
    write_json(model_dir / "code" / "serving.json", settings)


def serving_adapter(model_dir: Path) -> str:
    """code/requirements.txt for an adapter-only model dir: peft, at least the release that saved the adapter (the
    toolkit installs it at the endpoint's start; transformers is left as the image has it). Returns the base model
    the adapter names, for serving.json, warning when it is a local path that an endpoint will not have."""
    adapter = json.loads((model_dir / "adapter_config.json").read_text(encoding="utf-8"))
    release = re.match(r"\d+\.\d+(\.\d+)?", str(adapter.get("peft_version")))
    (model_dir / "code" / "requirements.txt").write_text(f"peft>={release[0] if release else '0.18'}\n")
    base = adapter.get("base_model_name_or_path") or ""
    if not base or base.startswith(("/", ".", "~")) or Path(base).exists():
        logger.warning(
            "the adapter's base model is %r, a path an endpoint will not have: set SM_TRAIN_BASE_MODEL in the "
            "endpoint's environment (or base_model in code/serving.json) to its Hub model id or to a folder inside "
            "the model dir, or train with merge_adapters=true to deploy the merged model",
            base,
        )
    return base
