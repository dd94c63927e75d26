"""The hyperparameters every job has, whatever its task: where the model and data come from, how the job saves,
stops and resumes, and its speed and safety switches. Task knobs live in each task's Args; config.py parses all."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class JobArgs:
    """Where the job reads its model and data, and how it resumes. Task knobs live in the task's Args."""

    task: str = field(
        default="text-classification",
        metadata={"help": "The task to train (see Tasks in the README), or 'module:Class' for your own."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Hub model id or local path. Default: the 'model' channel when the job has one."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer Hub id or local path, when not the model's own."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training file or directory (overrides the train channel)."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Evaluation file or directory (overrides the validation channel)."}
    )
    test_file: str | None = field(
        default=None,
        metadata={
            "help": "Test file or directory (overrides the test channel): predicted when there is validation data or "
            "do_predict=true, else the evaluation data."
        },
    )
    dataset_name: str | None = field(default=None, metadata={"help": "A Hugging Face Hub dataset (needs network)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration name."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N evaluation rows."})
    num_proc: int | None = field(default=None, metadata={"help": "Processes for preprocessing (datasets map)."})
    checkpoint_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where checkpoints go. Default: the estimator's checkpoint_local_path (/opt/ml/checkpoints)."
        },
    )
    save_every_minutes: float | None = field(
        default=None, metadata={"help": "Also save a checkpoint every N minutes of training (bounds a spot loss)."}
    )
    sigterm_grace_seconds: float = field(
        default=90.0,
        metadata={
            "help": "After SIGTERM/SIGINT: seconds to save a checkpoint before exiting (SageMaker kills at 120)."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after N evaluations without improvement of metric_for_best_model. Default then: evaluate "
            "at every save and keep the best model."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much metric_for_best_model must improve to count as better."}
    )
    resume: str = field(
        default="auto",
        metadata={"help": "auto (newest complete checkpoint in the checkpoint dir) | never | a checkpoint path."},
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={
            "help": "Pad each batch's length up to a multiple of N, so GPU kernels see few shapes. Default: 64 on a "
            "GPU, exact (dynamic) padding on CPU; 1 = exact."
        },
    )
    cudnn_attention: bool = field(
        default=False,
        metadata={
            "help": "Allow PyTorch's cuDNN attention backend, which builds an execution plan for every new batch "
            "shape (slow when shapes vary)."
        },
    )
    tensorboard_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where report_to=tensorboard writes its event files (logging_dir is read as this name). Default: "
            "TENSORBOARD_LOGGING_DIR, else /opt/ml/output/tensorboard, the folder a TensorBoard output config syncs."
        },
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Fine-tune LoRA adapters (PEFT, needs the peft package) instead of every weight; the task's head "
            "(classifier, QA outputs) is trained in full."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (use_lora)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha (use_lora)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path (use_lora)."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "The modules LoRA adapts (use_lora): module names (e.g. query,value) or all-linear. Default: "
            "all-linear (every linear layer but the output head)."
        },
    )
    merge_adapters: bool = field(
        default=True,
        metadata={
            "help": "use_lora: save the model with the adapters merged in (deploys like any model); false: save the "
            "adapter alone, whose serving module loads the base model and the adapter."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Load a custom model whose config.json names Python code (auto_map): runs that code from the "
            "model repository or directory. Only for code you trust."
        },
    )
    auto_launch: bool = field(
        default=True,
        metadata={
            "help": "Without a distribution flag on several GPUs or hosts, relaunch under torchrun: one process per "
            "GPU, every host in one job. false: run as launched (one process per host)."
        },
    )
    smp_parameters: dict | str | None = field(
        default=None,
        metadata={
            "help": "What the estimator's smdistributed modelparallel option sends as mp_parameters (k=v,... or "
            "JSON); arrives under that name."
        },
    )
