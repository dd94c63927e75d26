"""Benchmark: sm_train's training throughput, start-up time and preprocessing scale, each against a baseline
measured in the same run, on generated data and a BERT built here (nothing is downloaded).

Throughput (the default): one epoch of text classification on length-skewed rows (median ~45 tokens, a long tail
cut at --max-length), in samples/s, side by side:

- floor: a bare PyTorch loop over length-grouped batches (transformers' mega-batch grouping), padded by the rule
  sm_train uses on the device (sm_train.device.pad_multiple), AdamW (fused on a GPU), on a GPU autocast in the
  precision sm_train picks there (bf16, else fp16);
  timed from the first step to the end of the last, collation included;
- seed: the seed notebooks' way: every row padded to --max-length, a default Trainer (fp32, random batches);
  Trainer's train_samples_per_second;
- sm_train: `python -m sm_train train` on an /opt/ml tree holding the rows as CSV, its defaults; the
  train_samples_per_second it writes to model/train_results.json (Trainer's figure);
- sm_train fp16=true: the same with fp16=true (GPU only).

--only startup: process start to the end of the first training step, a sm_train job against a bare Trainer script
doing the same job (goal: ratio <= 1.2). --only scale: 100k- and 500k-row CSVs through a sm_train job (max_steps=1):
time to the first step and peak RSS of the job process (goal: under 2 GB at 500k rows, time about linear).

    python scripts/bench.py [--device cpu|cuda] [--size tiny|small|base] [--rows 3000] [--batch-size 32]
                            [--max-length 256] [--only throughput|startup|scale] [--json PATH]

The table goes to stdout; the figures go to a JSON file only with --json PATH (nothing is written otherwise, so a
run leaves nothing in the clone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench_setup import BARE_TRAINER, MARK, SIZES, build_model, make_rows  # noqa: E402
from sm_train.device import DeviceInfo, apply_attention_backends, describe, pad_multiple, padded_length  # noqa: E402
from tests.jobs import job_env, make_tree, write_rows  # noqa: E402


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def floor(model_dir: Path, rows: list[dict[str, str]], options: argparse.Namespace, info: DeviceInfo) -> dict:
    """A bare loop: length-grouped batches padded by sm_train's rule, collated in the loop, AdamW, one epoch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
    from transformers.trainer_pt_utils import get_length_grouped_indices

    device = torch.device(options.device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=options.max_length)
    features = [
        {**{k: v[i] for k, v in encoded.items()}, "labels": int(r["label"] == "pos")} for i, r in enumerate(rows)
    ]
    lengths = [len(f["input_ids"]) for f in features]
    order = get_length_grouped_indices(lengths, options.batch_size, generator=torch.Generator().manual_seed(42))
    batches = [order[i : i + options.batch_size] for i in range(0, len(order), options.batch_size)]
    multiple = pad_multiple(info, None, options.max_length)
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
    padded = sum(padded_length(max(lengths[i] for i in b), multiple) * len(b) for b in batches)

    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=device.type == "cuda")
    if device.type == "cuda":
        apply_attention_backends(info, allow_cudnn=False)  # as sm_train: no cuDNN plan per batch shape
    half = torch.bfloat16 if info.bf16 else torch.float16
    autocast = torch.autocast("cuda", dtype=half) if device.type == "cuda" else contextlib.nullcontext()
    synchronize(device)
    began = time.perf_counter()
    for indices in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in collate([features[i] for i in indices]).items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    seconds = time.perf_counter() - began
    result = {
        "samples_per_second": len(rows) / seconds,
        "seconds": seconds,
        "padded_tokens_per_row": padded / len(rows),
    }
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def seed(model_dir: Path, rows: list[dict[str, str]], options: argparse.Namespace, output_dir: Path) -> dict:
    """The seed notebooks' job: padding='max_length' at tokenization, a default Trainer in fp32."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [int(r["label"] == "pos") for r in rows]})
    data = data.map(
        lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=options.max_length),
        batched=True,
    )
    data.set_format("torch", columns=["input_ids", "attention_mask", "label"])
    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=1,
        per_device_train_batch_size=options.batch_size,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=options.device == "cpu",
    )
    metrics = Trainer(model=model, args=args, train_dataset=data).train().metrics
    del model
    if options.device == "cuda":
        torch.cuda.empty_cache()
    return {
        "samples_per_second": metrics["train_samples_per_second"],
        "seconds": metrics["train_runtime"],
        "padded_tokens_per_row": float(options.max_length),
    }


def run_process(command: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run a process to its end: seconds to the first-step mark and to its exit, and its peak RSS (wait4's
    ru_maxrss, this one process). Exits with the log's tail if it fails."""
    began = time.perf_counter()
    first = None
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:  # type: ignore[union-attr]
            out.write(line)
            if first is None and MARK in line:
                first = time.perf_counter() - began
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    if process.returncode != 0 or first is None:
        raise SystemExit(f"{' '.join(command[:3])} failed (exit {process.returncode}):\n{log.read_text()[-4000:]}")
    return {"first_step_seconds": first, "wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def child_env(root: Path, options: argparse.Namespace, cache: Path) -> dict[str, str]:
    """The job environment (offline guard included), a datasets cache of its own, and no GPU when --device cpu.
    This process's PYTHONPATH is kept: where packages come as wheels unpacked beside the Python's own (make test-gpu's
    GPU_SITE on a GPU machine), the job finds datasets there too."""
    env = job_env(root) | {"HF_DATASETS_CACHE": str(cache)}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    if options.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def sm_train_job(base: Path, data: Path, hps: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    """`python -m sm_train train` on a fresh /opt/ml tree whose train channel is `data`."""
    job = make_tree(base, hps, {"train": data})
    run = run_process(
        [sys.executable, "-m", "sm_train", "train"], child_env(job.root, options, base / "hf-cache"), base / "job.log"
    )
    return run | job.results("train_results.json")


def job_hps(model_dir: Path, options: argparse.Namespace, **more: Any) -> dict[str, Any]:
    return {
        "model_name_or_path": str(model_dir),
        "per_device_train_batch_size": options.batch_size,
        "save_strategy": "no",
        "max_seq_length": options.max_length,
        **more,
    }


def throughput(base: Path, model_dir: Path, options: argparse.Namespace, info: DeviceInfo) -> dict[str, Any]:
    """Every approach once per round, rounds one after another; each keeps its best round (other work on the
    machine only ever slows a round down)."""
    rows = make_rows(options.rows)
    data = base / "data"
    write_rows(data / "train.csv", rows)

    def job(name: str, **extra: Any) -> dict[str, Any]:
        hps = job_hps(model_dir, options, num_train_epochs=1, **extra)
        run = sm_train_job(base / f"{name}-{round_}", data, hps, options)
        keep = ("first_step_seconds", "wall_seconds")
        return {"samples_per_second": run["train_samples_per_second"], "seconds": run["train_runtime"]} | {
            k: run[k] for k in keep
        }

    approaches = {
        "floor": ("floor: bare loop, grouped, " + (("bf16" if info.bf16 else "fp16") if info.cuda else "fp32"),
                  lambda: floor(model_dir, rows, options, info)),
        "seed": ("seed: Trainer, pad to max_length, fp32", lambda: seed(model_dir, rows, options, base / "seed")),
        "sm_train": ("sm_train defaults", lambda: job("sm_train")),
    }  # fmt: skip
    if info.cuda:
        approaches["sm_train_fp16"] = ("sm_train fp16=true", lambda: job("sm_train_fp16", fp16=True))
    results: dict[str, dict[str, Any]] = {}
    for round_ in range(options.repeat or 1):
        for name, (label, measure) in approaches.items():
            say(f"round {round_ + 1}: {label} ...")
            result = {"label": label} | measure()
            runs = results.get(name, {}).get("all_samples_per_second", []) + [result["samples_per_second"]]
            if name not in results or result["samples_per_second"] > results[name]["samples_per_second"]:
                results[name] = result
            results[name]["all_samples_per_second"] = runs
    for result in results.values():
        result["vs_floor"] = result["samples_per_second"] / results["floor"]["samples_per_second"]
        result["vs_seed"] = result["samples_per_second"] / results["seed"]["samples_per_second"]
    lengths = [len(r["text"].split()) + 2 for r in rows]
    return {
        "rows": results,
        "token_lengths": {
            "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)),
            "max": max(lengths),
            "cut_at_max_length": sum(n > options.max_length for n in lengths),
        },
    }


def startup(base: Path, model_dir: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Best of --repeat runs each, interleaved, every run with fresh trees and datasets caches."""
    data = base / "data"
    write_rows(data / "train.csv", make_rows(options.rows))
    script = base / "bare_trainer.py"
    script.write_text(BARE_TRAINER)
    bare, ours = [], []
    repeat = options.repeat or 2
    for attempt in range(repeat):
        say(f"startup {attempt + 1}/{repeat}: bare Trainer script, sm_train job ...")
        where = base / f"bare-{attempt}"
        where.mkdir()
        command = [sys.executable, str(script), str(model_dir), str(data / "train.csv"), str(where / "out"),
                   str(options.max_length), str(options.batch_size), "2"]  # fmt: skip
        bare.append(run_process(command, child_env(where, options, where / "hf-cache"), where / "run.log"))
        hps = job_hps(model_dir, options, max_steps=2)
        ours.append(sm_train_job(base / f"sm_train-{attempt}", data, hps, options))
    bare_s = min(r["first_step_seconds"] for r in bare)
    ours_s = min(r["first_step_seconds"] for r in ours)
    return {"bare_trainer_seconds": bare_s, "sm_train_seconds": ours_s, "ratio": ours_s / bare_s}


def scale(base: Path, model_dir: Path, options: argparse.Namespace) -> dict[str, Any]:
    """The 500k-row file is the 100k rows five times: the same length distribution, generated once."""
    sizes = sorted(options.scale_rows)
    unit = make_rows(sizes[0])
    results = {}
    for n in sizes:
        say(f"scale: {n} rows through a sm_train job (max_steps=1) ...")
        data = base / f"data-{n}"
        write_rows(data / "train.csv", (unit * -(-n // len(unit)))[:n])
        run = sm_train_job(base / f"job-{n}", data, job_hps(model_dir, options, max_steps=1), options)
        results[str(n)] = {k: run[k] for k in ("first_step_seconds", "wall_seconds", "peak_rss_mb")}
        shutil.rmtree(data)
    first, last = results[str(sizes[0])], results[str(sizes[-1])]
    return {
        "runs": results,
        "time_ratio": last["first_step_seconds"] / first["first_step_seconds"],
        "rows_ratio": sizes[-1] / sizes[0],
    }


def quiet() -> None:
    """No weight-loading reports or progress bars between the lines this script prints."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def say(text: str) -> None:
    print(text, flush=True)


def machine(info: DeviceInfo) -> dict[str, Any]:
    import torch
    import transformers

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "device": info.name,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        # Other work on the machine when this run began: CPU figures from a busy machine are not comparable.
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "commit": git("rev-parse", "--short", "HEAD")
        + (" (modified)" if git("status", "--porcelain", "sm_train") else ""),
    }


def table(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"{m['device']}, {m['cpus']} CPUs, torch {m['torch']}, transformers {m['transformers']}, "
        f"sm_train at {m['commit']}, load average {m['load_average_at_start']} at start",
        f"BERT {s['size']}, {'/'.join(map(str, np.atleast_1d(s['rows'])))} rows, batch {s['batch_size']}, "
        f"max_length {s['max_length']}, "
        f"pad multiple {s['pad_multiple'] or 'none'}",
    ]
    if "throughput" in report:
        t = report["throughput"]["token_lengths"]
        lines.append(f"tokens per row: median {t['median']:.0f}, p90 {t['p90']:.0f}, longest {t['max']} "
                     f"({t['cut_at_max_length']} rows cut at max_length)")  # fmt: skip
        lines.append(f"{'':40} {'samples/s':>10} {'/ floor':>8} {'/ seed':>8} {'tokens/row':>11}")
        for r in report["throughput"]["rows"].values():
            tokens = f"{r['padded_tokens_per_row']:.0f}" if "padded_tokens_per_row" in r else ""
            speed, vs_floor, vs_seed = r["samples_per_second"], r["vs_floor"], r["vs_seed"]
            lines.append(f"{r['label']:40} {speed:10.1f} {vs_floor:8.2f} {vs_seed:8.2f} {tokens:>11}")
    if "startup" in report:
        u = report["startup"]
        lines += [
            "process start to the end of the first training step:",
            f"  bare Trainer script   {u['bare_trainer_seconds']:6.1f} s",
            f"  sm_train job          {u['sm_train_seconds']:6.1f} s",
            f"  ratio sm_train / bare {u['ratio']:6.2f}   (goal <= 1.2)",
        ]
    if "scale" in report:
        c = report["scale"]
        lines.append(f"{'rows':>10} {'to first step s':>16} {'wall s':>8} {'peak RSS MB':>12}")
        for n, r in c["runs"].items():
            lines.append(f"{n:>10} {r['first_step_seconds']:16.1f} {r['wall_seconds']:8.1f} {r['peak_rss_mb']:12.0f}")
        lines.append(
            f"time ratio {c['time_ratio']:.2f} for {c['rows_ratio']:.0f}x the rows (goal: peak RSS < 2048 MB)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--only", choices=("throughput", "startup", "scale"), default="throughput")
    parser.add_argument("--repeat", type=int, help="runs of each approach, the best counts (default: 1, startup 2)")
    parser.add_argument("--scale-rows", type=lambda v: [int(n) for n in v.split(",")], default=[100_000, 500_000])
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    options = parser.parse_args()
    quiet()
    if options.device == "cuda":
        info = describe()
        if not info.cuda:
            raise SystemExit("--device cuda: torch sees no CUDA device")
    else:
        info = DeviceInfo()
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    report: dict[str, Any] = {
        "machine": machine(info),
        "settings": {
            **{k: getattr(options, k) for k in ("device", "size", "rows", "batch_size", "max_length")},
            "pad_multiple": pad_multiple(info, None, options.max_length),
        },
    }
    if options.only == "scale":
        report["settings"]["rows"] = options.scale_rows
    try:
        model_dir = build_model(base / "model", options.size, options.max_length)
        if options.only == "throughput":
            report["throughput"] = throughput(base, model_dir, options, info)
        elif options.only == "startup":
            report["startup"] = startup(base, model_dir, options)
        else:
            report["scale"] = scale(base, model_dir, options)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if options.json:
        options.json.write_text(json.dumps(report, indent=2) + "\n")
        say(f"figures written to {options.json}\n")
    say(table(report))


if __name__ == "__main__":
    main()
