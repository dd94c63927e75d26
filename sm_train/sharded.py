"""What Trainer writes for an FSDP or DeepSpeed checkpoint, and whether such a checkpoint is whole.

transformers 4.57 and 5.x with accelerate 1.x write, beside trainer_state.json, scheduler.pt and rng_state_<rank>.pth:

- FSDP, SHARDED_STATE_DICT: `pytorch_model_fsdp_0/` and `optimizer_0/`, each a torch.distributed.checkpoint folder
  (`.metadata`, `__<rank>_0.distcp`); no model.safetensors (accelerate's save_fsdp_model/save_fsdp_optimizer).
- FSDP, FULL_STATE_DICT: model.safetensors, `pytorch_model_fsdp.bin` and `optimizer.bin` (no optimizer.pt).
- DeepSpeed: `latest` (the tag, `global_stepN`) and `global_stepN/` with `*model_states.pt` and, with ZeRO,
  `*zero_pp_rank_<rank>_mp_rank_00_optim_states.pt` per process; model.safetensors unless ZeRO-3 does not gather
  its weights; scheduler.pt only with a scheduler that is not DeepSpeed's (DeepSpeed keeps its own).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from sm_train.files import archive_problem

FSDP_MODEL = "pytorch_model_fsdp"
FSDP_SHARDED, FSDP_FULL, DEEPSPEED = "fsdp-sharded", "fsdp-full", "deepspeed"
DCP_METADATA = ".metadata"
DEEPSPEED_LATEST = "latest"
ADAPTER_WEIGHTS = "adapter_model.safetensors"  # a LoRA checkpoint's weights: the adapter and the head it trains


def layout(path: Path) -> str | None:
    """FSDP_SHARDED, FSDP_FULL, DEEPSPEED, or None for a checkpoint of one unsharded model."""
    if (path / DEEPSPEED_LATEST).is_file() or any(p.is_dir() for p in path.glob("global_step*")):
        return DEEPSPEED
    if any(p.is_dir() for p in path.glob(f"{FSDP_MODEL}_*")):
        return FSDP_SHARDED
    if (path / f"{FSDP_MODEL}.bin").is_file():
        return FSDP_FULL
    return None


class _MetadataUnpickler(pickle.Unpickler):
    """A distributed checkpoint's .metadata holds only these classes; anything else is refused, never run."""

    ALLOWED = (("torch.distributed.checkpoint.", ""), ("torch", "Size"), ("pathlib", "Path"))

    def find_class(self, module: str, name: str) -> Any:
        import torch

        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        layout_fn = (module, name) == ("torch.serialization", "_get_layout")
        if dtype or layout_fn or any(module.startswith(m) and name.endswith(n) for m, n in self.ALLOWED):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def dcp_metadata(directory: Path) -> Any:
    with (directory / DCP_METADATA).open("rb") as f:
        return _MetadataUnpickler(f).load()


def dcp_problem(directory: Path) -> str | None:
    """Why a torch.distributed.checkpoint folder is not whole: its .metadata, and every shard file it names as long
    as the metadata says."""
    if not (directory / DCP_METADATA).is_file():
        return f"{directory.name}/{DCP_METADATA} is missing"
    ends: dict[str, int] = {}
    for info in dcp_metadata(directory).storage_data.values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    for name, end in sorted(ends.items()):
        shard = directory / name
        if not shard.is_file() or shard.stat().st_size < end:
            return f"{directory.name}/{name} is missing or truncated"
    return None


def _deepspeed_problem(path: Path, world_size: int) -> str | None:
    latest = path / DEEPSPEED_LATEST
    if not latest.is_file():
        return f"{DEEPSPEED_LATEST} is missing (DeepSpeed reads the step folder's name from it)"
    tag = latest.read_text().strip()
    folder = path / tag
    if not tag or not folder.is_dir():
        return f"{DEEPSPEED_LATEST} names {tag!r}, which is missing"
    models = sorted(p.name for p in folder.glob("*model_states.pt"))
    optims = sorted(p.name for p in folder.glob("*optim_states.pt"))
    if not models:
        return f"{tag} has no model states"
    partitioned = [name for name in models if name.startswith("zero_pp_rank_")]  # ZeRO-3: one per process
    for kind, files in (("model", partitioned), ("optimizer", optims)):
        if files and len(files) != world_size:
            return f"{tag} has {len(files)} {kind} state files for {world_size} processes"
    return archive_problem(folder, models + optims)


def problem(path: Path, kind: str, world_size: int) -> str | None:
    """Why a checkpoint of this layout (the weights, optimizer and scheduler part) cannot be resumed from."""
    if kind == DEEPSPEED:
        return _deepspeed_problem(path, world_size)
    if kind == FSDP_FULL:
        return archive_problem(path, [f"{FSDP_MODEL}.bin", "optimizer.bin", "scheduler.pt"])
    for name in (f"{FSDP_MODEL}_0", "optimizer_0"):
        wrong = dcp_problem(path / name)
        if wrong:
            return wrong
    return archive_problem(path, ["scheduler.pt"])


def torch_files(path: Path, kind: str) -> list[str]:
    """The torch archives Trainer loads from a checkpoint of this layout that a pickle-safe load can check
    (DeepSpeed's own files hold more than tensors and are not loaded here)."""
    names = [f"{FSDP_MODEL}.bin", "optimizer.bin"] if kind == FSDP_FULL else []
    return [*names, "scheduler.pt"] if (path / "scheduler.pt").is_file() else names


def weights_problem(weights: Path, model: Any) -> str | None:
    """The saved tensors' names and shapes against the model's: from model.safetensors' header (an adapter's against
    what the peft model saves of itself), or from the metadata of an FSDP_SHARDED checkpoint's model folder."""
    state = _adapter_state(model) if weights.name == ADAPTER_WEIGHTS else model.state_dict()
    expected = {name: tuple(t.shape) for name, t in state.items()}
    if weights.is_dir():
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        items = dcp_metadata(weights).state_dict_metadata.items()
        saved = {
            name.removeprefix("model."): tuple(m.size) for name, m in items if isinstance(m, TensorStorageMetadata)
        }
        return shapes_problem(saved, expected)
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        saved = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    return shapes_problem(saved, expected)


def is_adapted(model: Any) -> bool:
    """Whether the model is a peft model (use_lora); peft is never imported to answer: a peft model exists only once
    peft was imported."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def _adapter_state(model: Any) -> dict[str, Any]:
    """The tensors a peft model saves (its adapters and the modules it trains in full), by their saved names; none
    for a model without adapters."""
    return sys.modules["peft"].get_peft_model_state_dict(model) if is_adapted(model) else {}


def shapes_problem(saved: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]) -> str | None:
    """Saved tensors of another model: a shape that differs, or most names unknown to this one."""
    shared = saved.keys() & expected.keys()
    wrong = sorted(name for name in shared if saved[name] != expected[name])
    if wrong:
        return f"its weights belong to another model ({wrong[0]}: {saved[wrong[0]]} here, {expected[wrong[0]]} in it)"
    if len(shared) < len(saved) / 2:
        return f"its weights belong to another model ({len(saved) - len(shared)} of {len(saved)} tensors unknown)"
    return None
