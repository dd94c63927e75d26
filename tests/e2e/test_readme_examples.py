"""Every launch in the README's "Run on SageMaker" (the ```python sdk-v3 and ```python sdk-v2 blocks) runs as written
with the pinned SDK, offline, in a fresh namespace: its own setup (clone, region, role, bucket) and uploads of the
"Your data" tables' rows are what the launches use, the requests it builds are checked here, their hyperparameters
parse alike in both SDKs, and the tables' data is what each task reads."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from datasets import DatasetDict

from sm_train.catalog import METRIC_NAMES
from sm_train.config import parse
from sm_train.data import load_path
from sm_train.device import DeviceInfo
from sm_train.env import from_environ
from sm_train.metrics import metric_definitions
from tests.sdk import CHANNELS, DATA, README, data_file, launch, run_blocks
from tests.sdk_run import ACCOUNT, ROLE

pytestmark = pytest.mark.external  # the SDKs run in venvs of their own

TASKS = ("text-classification", "question-answering", "summarization")  # the order of the README's examples
IMAGES = "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
V3_IMAGE, V2_IMAGE = IMAGES + "2.9.0-transformers5.3.0-gpu-py312", IMAGES + "2.8.0-transformers4.56.2-gpu-py312"
REGION = "us-east-1"  # the README's, said in its setup cells: the test run has none
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"  # the session's default bucket


def task_of(hyperparameters: dict[str, str]) -> str:
    """The task of a request's hyperparameters (JSON-encoded by SDK v2, raw strings from SDK v3)."""
    return hyperparameters.get("task", "text-classification").strip('"')


def test_the_readme_launches_every_task_with_both_sdks() -> None:
    text = README.read_text()
    for tag in ("sdk-v3", "sdk-v2"):
        blocks = re.findall(rf"^```python {tag}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
        assert len(blocks) == 4, f"{README}: a setup block and one launch per task, tagged ```python {tag}"
    assert "5.13.1" not in text.split("## Run on SageMaker")[1].split("\n## ")[0]


def test_sdk_v3_requests() -> None:
    sdk = launch("sdk-v3")
    assert [task_of(r["HyperParameters"]) for r in sdk.requests] == list(TASKS)
    for request in sdk.requests:
        task = task_of(request["HyperParameters"])
        spec = request["AlgorithmSpecification"]
        assert spec["TrainingImage"].startswith(V3_IMAGE)
        assert spec["MetricDefinitions"] == metric_definitions(METRIC_NAMES[task])
        assert all(isinstance(v, str) for v in request["HyperParameters"].values())
        code, drivers = sdk.channel(request, "code"), sdk.channel(request, "sm_drivers")
        assert (code / "scripts" / "train.py").exists() and (code / "requirements.txt").exists()
        assert not (code / ".venv").exists()
        script = (drivers / "sm_train.sh").read_text()
        assert "install_requirements.py requirements.txt" in script
        assert json.loads((drivers / "sourcecode.json").read_text())["entry_script"] == "scripts/train.py"
        distributed = (drivers / "distributed.json").read_text()
        if task == "text-classification":
            assert request["EnableManagedSpotTraining"] is True
            assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/sm-train/checkpoints/reviews/"
            assert request["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
            assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] > request["StoppingCondition"][
                "MaxRuntimeInSeconds"
            ]  # fmt: skip
            assert "basic_script_driver.py" in script and distributed.strip() in ("", "{}", "null")
        else:
            assert "torchrun_driver.py" in script and "process_count_per_node" in distributed
    assert [r["ResourceConfig"]["InstanceCount"] for r in sdk.requests] == [1, 1, 2]


def test_sdk_v2_requests() -> None:
    sdk = launch("sdk-v2")
    assert [task_of(r["HyperParameters"]) for r in sdk.requests] == list(TASKS)
    for request in sdk.requests:
        hyperparameters = request["HyperParameters"]
        task = task_of(hyperparameters)
        assert request["AlgorithmSpecification"]["TrainingImage"].startswith(V2_IMAGE)
        assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions(METRIC_NAMES[task])
        assert json.loads(hyperparameters["sagemaker_program"]) == "scripts/train.py"
        with tarfile.open(sdk.uploaded(json.loads(hyperparameters["sagemaker_submit_directory"]))) as tar:
            names = set(tar.getnames())
        assert {"scripts/train.py", "requirements.txt", "sm_train/cli.py"} <= names
        assert not any(name.startswith(".venv") for name in names)
        if task == "text-classification":
            assert request["EnableManagedSpotTraining"] is True
            assert request["CheckpointConfig"] == {"S3Uri": f"s3://{BUCKET}/sm-train/checkpoints/reviews/"}
        else:
            assert hyperparameters["sagemaker_torch_distributed_enabled"] == "true"


@pytest.mark.parametrize("index", range(len(TASKS)))
def test_both_sdks_hyperparameters_type_identically(tmp_path: Path, index: int) -> None:
    """The same dictionary, sent as JSON values by SDK v2 and as raw strings by SDK v3, gives the same job."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    v2 = launch("sdk-v2").requests[index]["HyperParameters"]
    v3 = launch("sdk-v3").requests[index]["HyperParameters"]
    from_v2 = parse([(k, json.loads(v)) for k, v in v2.items() if not k.startswith("sagemaker_")], env, DeviceInfo())
    from_v3 = parse(list(v3.items()), env, DeviceInfo())
    assert from_v2.job == from_v3.job and from_v2.task_args == from_v3.task_args
    assert from_v2.training_args.to_dict() == from_v3.training_args.to_dict()
    assert from_v3.training_args.fp16 is True and isinstance(from_v3.training_args.learning_rate, float)


@pytest.mark.parametrize("tag", ["sdk-v3", "sdk-v2"])
def test_the_setup_cell_gives_every_launch_its_region_role_bucket_and_data(tag: str) -> None:
    """Nothing is defined before the blocks run and no region comes from the environment: the region, role and bucket
    the requests carry come from the README's own setup, and each launch's data channels are exactly the prefixes its
    cell uploaded the local folders to, before the job was created."""
    sdk = launch(tag)
    assert {c["region"] for c in sdk.calls if c["region"] != "aws-global"} == {REGION}  # IAM alone is global
    first_job = next(i for i, c in enumerate(sdk.calls) if c["operation"] == "CreateTrainingJob")
    assert "GetCallerIdentity" in [c["operation"] for c in sdk.calls[:first_job]]  # get_execution_role asked STS
    for request in sdk.requests:
        task = task_of(request["HyperParameters"])
        dataset, kind, rows = DATA[task]
        assert request["RoleArn"] == ROLE  # with the path IAM answers: get_execution_role's, not a typed name
        channels = {k: v for k, v in sdk.channel_uris(request).items() if k not in ("code", "sm_drivers")}
        assert channels == {c: f"s3://{BUCKET}/sm-train/{dataset}/{c}" for c in CHANNELS}
        put = sdk.put_before(request)
        for channel, uri in channels.items():
            assert [u for u in put if u.startswith(uri + "/")] == [f"{uri}/{channel}.{kind}"]
            assert (sdk.uploaded(uri) / f"{channel}.{kind}").read_text() == data_file(rows, kind)
        if tag == "sdk-v2":  # the source_dir tarball too went to the session's bucket
            code = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
            assert code.startswith(f"s3://{BUCKET}/") and code in put
        else:
            assert {sdk.channel_uris(request)[c].split("/")[2] for c in ("code", "sm_drivers")} == {BUCKET}


def test_without_the_region_the_setup_fails_as_on_an_unconfigured_machine(tmp_path: Path) -> None:
    """The runs above get no region from anywhere but the README: the same cells with boto3's default session fail."""
    text = README.read_text()
    explicit = f'boto3.Session(region_name="{REGION}")'
    assert text.count(explicit) == 2  # once in each SDK's setup cell
    readme = tmp_path / "README.md"
    readme.write_text(text.replace(explicit, "boto3.Session()"))
    (tmp_path / "run").mkdir()
    done = run_blocks("sdk-v3", readme, tmp_path / "run")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == "ValueError: Must setup local AWS configuration with a region supported by SageMaker.", last


def readme_tables() -> list[list[dict[str, object]]]:
    """The rows of the tables under "### Your data", in order; a cell in backticks is JSON."""
    section = README.read_text().split("\n### Your data\n")[1].split("\n### ")[0]
    tables = re.findall(r"((?:^\|.*\|\n)+)", section, re.MULTILINE)
    parsed = []
    for table in tables:
        header, _, *lines = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in table.splitlines()]
        cells = [[json.loads(c[1:-1]) if c.startswith("`") else c for c in line] for line in lines]
        parsed.append([dict(zip(header, line, strict=True)) for line in cells])
    return parsed


def test_the_data_tables_are_the_uploaded_rows() -> None:
    assert readme_tables() == [DATA[task][2] for task in TASKS]


@pytest.mark.parametrize("index", range(len(TASKS)))
def test_each_task_reads_the_uploaded_data(tmp_path: Path, index: int) -> None:
    """The files the launch uploaded, read as the job reads its channels, pass the task's checks with the launch's
    hyperparameters (columns, labels, answers; the tokenizer's checks are the job's own)."""
    (tmp_path / "input" / "config").mkdir(parents=True)
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    sdk = launch("sdk-v3")
    request = sdk.requests[index]
    cfg = parse(list(request["HyperParameters"].items()), env, DeviceInfo())
    raw = DatasetDict(
        train=load_path(sdk.channel(request, "train")), eval=load_path(sdk.channel(request, "validation"))
    )
    prepared = cfg.task_cls(cfg.task_args, None).prepare(raw)
    assert {split: len(rows) for split, rows in prepared.items()} == {"train": 2, "eval": 2}


@pytest.mark.parametrize("tag", ["sdk-v3", "sdk-v2"])
def test_the_readme_tuning_job_and_a_trial_of_it(tmp_path: Path, tag: str) -> None:
    """The README's tuning cell (after its SDK's own cells) creates one tuning job whose objective the trials print
    and whose definitions read it; a trial's hyperparameters, as the service writes them (the static ones, a value
    of each range, _tuning_objective_metric), give a job that evaluates every epoch and keeps its best model by the
    objective."""
    sdk = launch(f"{tag}+tune-{tag[-2:]}")
    [job] = [c["params"] for c in sdk.calls if c["operation"] == "CreateHyperParameterTuningJob"]
    config, definition = job["HyperParameterTuningJobConfig"], job["TrainingJobDefinition"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "eval_accuracy"}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    definitions = definition["AlgorithmSpecification"]["MetricDefinitions"]
    assert len(definitions) <= 20  # CreateHyperParameterTuningJob's limit
    assert all(d in metric_definitions(METRIC_NAMES["text-classification"]) for d in definitions)
    assert "eval_accuracy" in [d["Name"] for d in definitions]
    ranges = config["ParameterRanges"]
    chosen = {r["Name"]: r["MinValue"] for r in ranges["ContinuousParameterRanges"]}
    chosen |= {r["Name"]: r["Values"][0] for r in ranges["CategoricalParameterRanges"]}
    trial = {**definition["StaticHyperParameters"], **chosen, "_tuning_objective_metric": "eval_accuracy"}
    config_dir = tmp_path / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(trial))
    env = from_environ({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    cfg = parse(list(env.hyperparameters.items()), env, DeviceInfo())
    args = cfg.training_args
    assert args.learning_rate == 1e-5 and args.per_device_train_batch_size == 16 and args.fp16 is True
    assert args.eval_strategy == "epoch" and args.metric_for_best_model == "accuracy" and args.greater_is_better
