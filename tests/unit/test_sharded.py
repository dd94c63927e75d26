"""sharded.py: FSDP and DeepSpeed checkpoint layouts recognised as complete, torn ones detected, weights checked.

The FSDP SHARDED_STATE_DICT folders are written here by torch.distributed.checkpoint exactly as accelerate's
save_fsdp_model/save_fsdp_optimizer call it (dist_cp.save({"model": ...}, FileSystemWriter(dir)) into
pytorch_model_fsdp_0/ and optimizer_0/), in one process. The DeepSpeed layout follows DeepSpeed's engine
(save_checkpoint: `latest`, global_stepN/mp_rank_00_model_states.pt, zero_pp_rank_R_mp_rank_00_optim_states.pt);
DeepSpeed is not installed here, so its files are small torch archives of the same names.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from sm_train import sharded
from sm_train.checkpoint import load_problem, problem, resolve_resume, write_manifest


def _common(path: Path, step: int, world_size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for rank in range(world_size):
        torch.save({"cpu": torch.random.get_rng_state()}, path / f"rng_state_{rank}.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def fsdp_sharded(root: Path, step: int, model: nn.Module, manifest: bool = True) -> Path:
    import torch.distributed.checkpoint as dcp

    path = root / f"checkpoint-{step}"
    _common(path, step, 1)
    dcp.save({"model": model.state_dict()}, storage_writer=dcp.FileSystemWriter(path / "pytorch_model_fsdp_0"))
    optimizer = {"state": {"w": {"exp_avg": torch.zeros(4, 3)}}, "param_groups": [{"lr": 0.1}]}
    dcp.save({"optimizer": optimizer}, storage_writer=dcp.FileSystemWriter(path / "optimizer_0"))
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    if manifest:
        write_manifest(path, world_size=1)
    return path


def fsdp_full(root: Path, step: int, model: nn.Module) -> Path:
    from safetensors.torch import save_file

    path = root / f"checkpoint-{step}"
    _common(path, step, 2)
    save_file(model.state_dict(), str(path / "model.safetensors"))
    torch.save(model.state_dict(), path / "pytorch_model_fsdp.bin")
    torch.save({"state": {}, "param_groups": []}, path / "optimizer.bin")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    write_manifest(path, world_size=2)
    return path


def deepspeed(root: Path, step: int, world_size: int = 2, zero3: bool = False) -> Path:
    path = root / f"checkpoint-{step}"
    _common(path, step, world_size)
    folder = path / f"global_step{step}"
    folder.mkdir()
    (path / "latest").write_text(f"global_step{step}")
    models = [f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in range(world_size)] if zero3 else []
    for name in models or ["mp_rank_00_model_states.pt"]:
        torch.save({"module": None}, folder / name)
    for rank in range(world_size):
        torch.save({"optimizer_state_dict": {}}, folder / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    (path / "zero_to_fp32.py").write_text("# DeepSpeed's recovery script\n")
    write_manifest(path, world_size=world_size)
    return path


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_layouts_are_told_apart(tmp_path: Path, model) -> None:
    assert sharded.layout(fsdp_sharded(tmp_path, 1, model)) == sharded.FSDP_SHARDED
    assert sharded.layout(fsdp_full(tmp_path, 2, model)) == sharded.FSDP_FULL
    assert sharded.layout(deepspeed(tmp_path, 3)) == sharded.DEEPSPEED
    assert sharded.layout(tmp_path) is None


def test_sharded_checkpoints_are_complete_and_load(tmp_path: Path, model) -> None:
    for path in (fsdp_sharded(tmp_path, 1, model), fsdp_sharded(tmp_path / "old", 1, model, manifest=False),
                 fsdp_full(tmp_path, 2, model), deepspeed(tmp_path, 3), deepspeed(tmp_path, 4, zero3=True),
                 deepspeed(tmp_path, 5, world_size=1)):  # fmt: skip
        assert problem(path) is None, path
        assert load_problem(path, model) is None, path


def _drop(name: str):
    return lambda p: (p / name).unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_drop("pytorch_model_fsdp_0/__0_0.distcp"), "pytorch_model_fsdp_0/__0_0.distcp is missing or truncated"),
        (_drop("pytorch_model_fsdp_0/.metadata"), "pytorch_model_fsdp_0/.metadata is missing"),
        (_drop("optimizer_0/.metadata"), "optimizer_0/.metadata is missing"),
        (lambda p: (p / "optimizer_0/__0_0.distcp").write_bytes(b"x"), "optimizer_0/__0_0.distcp is missing or trunc"),
        (_drop("scheduler.pt"), "scheduler.pt is missing"),
        (_drop("rng_state_0.pth"), "rng_state.pth is missing"),
    ],
)
def test_torn_fsdp_checkpoints_without_a_manifest(tmp_path: Path, model, damage, reason) -> None:
    path = fsdp_sharded(tmp_path, 1, model, manifest=False)
    damage(path)
    assert reason in problem(path)


def test_torn_fsdp_checkpoint_with_a_manifest(tmp_path: Path, model) -> None:
    path = fsdp_sharded(tmp_path, 1, model)
    (path / "optimizer_0" / "__0_0.distcp").unlink()
    assert "optimizer_0/__0_0.distcp is missing or has the wrong size" in problem(path)


def test_metadata_that_is_not_a_checkpoints_is_refused_unrun(tmp_path: Path, model) -> None:
    path = fsdp_sharded(tmp_path, 1, model, manifest=False)
    (path / "pytorch_model_fsdp_0" / ".metadata").write_bytes(pickle.dumps(print))
    assert "builtins.print is not part of a checkpoint's metadata" in problem(path)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_drop("latest"), "latest is missing"),
        (lambda p: (p / "latest").write_text("global_step7"), "latest names 'global_step7', which is missing"),
        (_drop("global_step3/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"), "1 optimizer state files for 2"),
        (_drop("global_step3/mp_rank_00_model_states.pt"), "global_step3 has no model states"),
        (lambda p: (p / "global_step3/mp_rank_00_model_states.pt").write_bytes(b"x"), "model_states.pt is missing or"),
    ],
)
def test_torn_deepspeed_checkpoints(tmp_path: Path, damage, reason) -> None:
    path = deepspeed(tmp_path, 3)
    (path / "sm_train_checkpoint.json").unlink()  # the layout's own checks (the manifest catches these too)
    damage(path)
    assert reason in problem(path)


def test_zero3_needs_every_process_model_states(tmp_path: Path) -> None:
    path = deepspeed(tmp_path, 3, zero3=True)
    (path / "global_step3" / "zero_pp_rank_0_mp_rank_00_model_states.pt").unlink()
    (path / "sm_train_checkpoint.json").unlink()
    assert "1 model state files for 2 processes" in problem(path)


def test_sharded_weights_of_another_model_are_refused(tmp_path: Path, model) -> None:
    path = fsdp_sharded(tmp_path, 1, model)
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2))
    assert "its weights belong to another model (0.bias: (4,) here, (5,) in it)" in load_problem(path, other)


def test_fsdp_full_optimizer_must_load(tmp_path: Path, model) -> None:
    path = fsdp_full(tmp_path, 1, model)
    (path / "optimizer.bin").write_bytes((path / "optimizer.bin").read_bytes()[:-30])
    write_manifest(path, world_size=2)
    assert "optimizer.bin" in (problem(path) or load_problem(path, model))


def test_resume_picks_the_newest_whole_sharded_checkpoint(tmp_path: Path, model) -> None:
    fsdp_sharded(tmp_path, 4, model)
    newest = fsdp_sharded(tmp_path, 8, model)
    torn = fsdp_sharded(tmp_path, 12, model)
    (torn / "pytorch_model_fsdp_0" / "__0_0.distcp").unlink()
    assert resolve_resume("auto", tmp_path, usable=lambda p: load_problem(p, model)) == str(newest)
    assert not torn.exists() and (tmp_path / "incomplete").is_dir()
    assert resolve_resume(str(newest), tmp_path, usable=lambda p: load_problem(p, model)) == str(newest)


def test_deepspeed_resume_path_is_the_checkpoint_folder(tmp_path: Path) -> None:
    """Trainer hands the checkpoint-N folder to DeepSpeed, which reads `latest` there."""
    path = deepspeed(tmp_path, 6)
    assert resolve_resume("auto", tmp_path) == str(path)
