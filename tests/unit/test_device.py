"""device.py: device decisions as pure functions, for devices described rather than present."""

from pathlib import Path

import pytest
import torch

from sm_train import config, device
from sm_train.device import DeviceInfo
from sm_train.env import from_environ

H100 = DeviceInfo(cuda=True, bf16=True, capability=(9, 0), name="NVIDIA H100")
T4 = DeviceInfo(cuda=True, bf16=False, capability=(7, 5), name="Tesla T4")
CPU = DeviceInfo()


def test_mixed_precision_by_default_on_a_gpu() -> None:
    values, said = device.precision(H100, {})
    assert values == {"bf16": True, "tf32": True}
    assert said[0] == "mixed precision: bf16 on NVIDIA H100 (set bf16=false to train in fp32)"
    assert device.precision(T4, {})[0] == {"fp16": True}  # no bf16, no TF32 before Ampere
    assert device.precision(CPU, {}) == ({}, [])


@pytest.mark.parametrize("given", [{"fp16": "true"}, {"bf16": "false"}, {"fp16": False}])
def test_what_the_user_set_is_honoured(given) -> None:
    values, _ = device.precision(H100, given)
    assert values == {"tf32": True}
    assert device.precision(H100, {**given, "tf32": False})[0] == {}


def test_padding_multiple() -> None:
    assert device.pad_multiple(H100, None, 512) == 64
    assert device.pad_multiple(CPU, None, 512) is None  # exact dynamic padding on CPU
    assert device.pad_multiple(CPU, 64, 512) == 64
    assert device.pad_multiple(H100, 1, 512) is None
    assert device.pad_multiple(H100, None, 514) is None  # padding could pass the model's positions
    assert device.pad_multiple(H100, None, int(1e30)) == 64  # a tokenizer without a limit
    assert [device.padded_length(n, 64) for n in (1, 64, 65)] == [64, 64, 128]
    assert device.padded_length(37, None) == 37


def test_data_loading_defaults() -> None:
    assert device.dataloader_defaults(CPU, 2, 0) == {"dataloader_pin_memory": False}
    gpu = device.dataloader_defaults(H100, 16, 1)
    assert gpu["dataloader_pin_memory"] and gpu["dataloader_num_workers"] == 4 and gpu["dataloader_persistent_workers"]
    assert device.dataloader_defaults(H100, 8, 8)["dataloader_num_workers"] == 0  # one core per GPU: none to spare


def test_attention_backend_decision_is_pure(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", lambda on: pytest.fail("the decision set the switch"))
    allowed, said = device.attention_backends(H100, False)
    assert allowed is False and "cudnn_attention=true" in said
    assert device.attention_backends(H100, True) == (True, None)
    assert device.attention_backends(CPU, False) == (False, None)  # nothing to say without a GPU


def test_applying_the_attention_backend_sets_the_process_wide_switch(monkeypatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", lambda on: calls.append(on))
    assert "cudnn_attention=true" in device.apply_attention_backends(H100, False)
    assert device.apply_attention_backends(H100, True) is None
    assert device.apply_attention_backends(CPU, False) is None  # set on CPU too, where it changes nothing
    assert calls == [False, True, False]


def parsed(tmp_path: Path, monkeypatch, hardware: DeviceInfo, **given):
    """The training arguments parsed for a job on `hardware`, as described by the caller; never asked for."""
    monkeypatch.setattr(device, "describe", lambda: pytest.fail("parsing described the device"))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    return config.parse(list(given.items()), env, hardware).training_args


def test_defaults_reach_the_training_arguments(tmp_path: Path, monkeypatch) -> None:
    args = parsed(tmp_path, monkeypatch, CPU)
    assert args.train_sampling_strategy == "group_by_length" and not args.bf16 and not args.fp16
    assert parsed(tmp_path, monkeypatch, CPU, group_by_length="false").train_sampling_strategy == "random"
    assert parsed(tmp_path, monkeypatch, CPU, train_sampling_strategy="random").train_sampling_strategy == "random"
    assert parsed(tmp_path, monkeypatch, T4).fp16  # T4: fp16, described (no GPU here to build bf16 arguments on)
    assert not parsed(tmp_path, monkeypatch, T4, use_cpu="true").fp16
    assert not parsed(tmp_path, monkeypatch, T4, fp16="false").fp16
