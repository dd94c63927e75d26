"""One rank of the two-process SMDDP check in tests/e2e/test_smdist.py, started by mpirun (only Open MPI's variables
set) with the smdistributed stand-in on PYTHONPATH. argv: export|bare, a scratch dir. Prints one RESULT line."""

from __future__ import annotations

import json
import os
import sys

from sm_train import env as sm_env
from sm_train import smdist

if sys.argv[1] == "export":  # what cli.train does before parsing the configuration
    variables = smdist.data_parallel_environment(sm_env.from_environ(), torch_version="2.5.1")  # the stand-in's
    for name, value in variables.items():
        os.environ.setdefault(name, value)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

try:  # __post_init__ sets up the device (as in config.parse): accelerate's PartialState, which calls
    # init_process_group(backend="smddp") and then picks the rank's GPU
    TrainingArguments(output_dir=sys.argv[2], use_cpu=False, report_to="none")
    error = None
except Exception as caught:  # no GPU on this machine: accelerate's set_device fails after the group is up
    error = f"{type(caught).__name__}: {caught}"
result = {"error": error, "initialized": dist.is_initialized()}
if dist.is_initialized():
    from smdistributed.dataparallel.torch import torch_smddp

    total = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(total)
    result |= {"backend": dist.get_backend(), "rank": dist.get_rank(), "world": dist.get_world_size(),
               "sum": total.item(), "created": torch_smddp.CREATED}  # fmt: skip
    dist.destroy_process_group()
print("RESULT " + json.dumps(result), flush=True)
