"""What the job decides from the device it runs on: precision, padding multiple, attention backend, data loading.

Each decision is a pure function of a DeviceInfo and what the user set, so it is tested on CPU with any device
described. describe() is the one place that asks torch about the hardware (its caller passes the DeviceInfo on:
parsing asks no hardware), and apply_attention_backends() the one that changes torch's process-wide state.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

GPU_PAD_MULTIPLE = 64  # few distinct batch shapes: kernels (and cuDNN plans) are reused, not rebuilt per length


@dataclass(frozen=True)
class DeviceInfo:
    cuda: bool = False
    bf16: bool = False  # the GPU computes in bfloat16 natively (Ampere and newer)
    capability: tuple[int, int] = (0, 0)
    name: str = "cpu"


def describe() -> DeviceInfo:
    import torch

    if not torch.cuda.is_available():
        return DeviceInfo()
    return DeviceInfo(
        cuda=True,
        bf16=torch.cuda.is_bf16_supported(),
        capability=torch.cuda.get_device_capability(),
        name=torch.cuda.get_device_name(),
    )


def precision(device: DeviceInfo, explicit: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """Mixed precision and TF32 on a GPU unless the user chose: bf16 where the GPU supports it, else fp16; TF32
    matmuls from Ampere on. Returns the defaults and one log line per decision, each saying how to turn it off."""
    if not device.cuda:
        return {}, []
    values: dict[str, Any] = {}
    said = []
    if not {"fp16", "bf16"} & set(explicit):
        kind = "bf16" if device.bf16 else "fp16"
        values[kind] = True
        said.append(f"mixed precision: {kind} on {device.name} (set {kind}=false to train in fp32)")
    if "tf32" not in explicit and device.capability >= (8, 0):
        values["tf32"] = True
        said.append(f"TF32 matmuls on {device.name} (set tf32=false to turn them off)")
    return values, said


def pad_multiple(device: DeviceInfo, requested: int | None, limit: int) -> int | None:
    """The multiple batch lengths are padded up to: `requested`, else 64 on a GPU and none (exact dynamic padding)
    on CPU, where every padded token costs time. None when the multiple could pad past `limit`, the model's length
    (its position embeddings would overflow); 1 means none."""
    multiple = requested if requested is not None else (GPU_PAD_MULTIPLE if device.cuda else None)
    bounded = limit < 1_000_000  # tokenizers without a limit say 1e30
    if multiple is None or multiple <= 1 or (bounded and limit % multiple):
        return None
    return multiple


def padded_length(length: int, multiple: int | None) -> int:
    """A batch of rows up to `length` tokens is padded to this length."""
    return length if not multiple else -(-length // multiple) * multiple


def dataloader_defaults(device: DeviceInfo, num_cpus: int, num_gpus: int) -> dict[str, Any]:
    """On a GPU, collate in worker processes (the main process then only launches kernels) and pin memory; on CPU
    workers compete with the compute for the same cores."""
    if not device.cuda:
        return {"dataloader_pin_memory": False}
    per_gpu = max(num_cpus // max(num_gpus, 1), 1)
    workers = min(4, per_gpu - 1)
    return {
        "dataloader_pin_memory": True,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,
        **({"dataloader_prefetch_factor": 4} if workers > 0 else {}),
    }


def attention_backends(device: DeviceInfo, allow_cudnn: bool) -> tuple[bool, str | None]:
    """Whether attention may use cuDNN's backend, and the line to log. Kept off unless allowed: in half precision
    with a padding mask, PyTorch sends attention there on Hopper, and cuDNN builds an execution plan for every new
    (batch, length) shape (332 ms for a step at a new length against 36 ms at a repeated one, measured on an H100);
    shapes still vary with generation or pad_to_multiple_of=1. Nothing to say without a GPU."""
    if device.cuda and not allow_cudnn:
        return False, "cuDNN attention off: it builds a plan per batch shape (set cudnn_attention=true to allow it)"
    return allow_cudnn, None


def apply_attention_backends(device: DeviceInfo, allow_cudnn: bool) -> str | None:
    """Sets torch's process-wide cuDNN attention switch as attention_backends() decides, before the first forward
    pass; returns the line to log. Set on CPU too, where it changes nothing (no attention runs on cuDNN there): a job
    sets the same switch on either device, so a CPU run shows it set before the first forward."""
    import torch

    allowed, said = attention_backends(device, allow_cudnn)
    torch.backends.cuda.enable_cudnn_sdp(allowed)
    return said
