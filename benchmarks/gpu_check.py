"""`make gpu-check`: every GPU path and GPU benchmark in one run, and one summary table.

Steps, each a child process in its own process group (the whole group is killed at the
step's timeout, or when the run's budget of just under 8 minutes is spent):

  environment  versions, the CUDA device, faiss GPUs, modules the later steps need
  gpu tests    `pytest -m gpu tests/gpu` (every CUDA path of the library)
  encoder      bench_encoder.py: ViT-B-16 (random weights) from 512 px JPEG bytes to vectors
  search       bench_index.py --sections gpu: exact search, 80,000 x 512, batched queries
  generation   bench_generation.py --mode speed: Qwen2-VL-2B architecture (random weights,
               built from its config), 448 px, one image per call vs batched vs static cache
  train        bench_train.py: `medcap train` vs open_clip_train, ViT-B-16, same batch

Without CUDA it says so, collects the gpu tests and runs each benchmark as a small smoke run
on the CPU (tiny models); no goal is judged. Results (one JSON per benchmark, the logs and
gpu_check.json) go to --out (default: a new temporary folder); nothing in the source tree
changes. Only the standard library is imported here, so it reports missing modules instead
of failing on them. Runs with any Python that has the dependencies, from the source tree:

    make gpu-check                        # the project's .venv when there is one
    make gpu-check PYTHON=python3 OUT=/tmp/gpu-check
    python3 benchmarks/gpu_check.py --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
BUDGET_S = 470  # the whole run, under 8 minutes
MIN_STEP_S = 20  # a step is not started with less time than this left

# Goals from issue 3, held against the figures measured on one GPU.
GOALS = {
    "encoder": 4000.0,  # images/s, ViT-B-16, JPEG bytes -> vectors
    "search": 1_000_000.0,  # queries/s, exact, batched
    "generation": 0.012,  # s per image, Qwen2-VL-2B, 128 new tokens
    "train": 0.9,  # medcap samples/s over open_clip's
}

ENVIRONMENT = """
import importlib, importlib.util, json, platform, sys
mods = sys.argv[1].split(",")
info = {"python": platform.python_version(),
        "missing": [m for m in mods if importlib.util.find_spec(m) is None]}
for name in ("torch", "torchvision", "transformers", "peft", "open_clip", "faiss", "numpy"):
    try:
        info[name] = importlib.import_module(name).__version__
    except Exception as exc:
        info[name] = f"absent ({type(exc).__name__})"
try:
    import torch
    info["cuda"] = torch.cuda.is_available()
    if info["cuda"]:
        info["device"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
        info["cuda_version"] = torch.version.cuda
except Exception:
    info["cuda"] = False
try:
    import faiss
    info["faiss_gpus"] = int(getattr(faiss, "get_num_gpus", lambda: 0)())
except Exception:
    info["faiss_gpus"] = 0
print(json.dumps(info))
"""


@dataclass
class Step:
    """One child process of the check, with its GPU and CPU-smoke command lines."""

    name: str
    gpu_args: list[str]
    cpu_args: list[str]
    timeout_s: int
    needs: tuple[str, ...]  # importable modules the step cannot run without
    summarize: Callable[[Path, bool], tuple[str, str, bool | None]] | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _bench(script: str, *args: str) -> list[str]:
    return [str(BENCH / script), *args]


def _read(out: Path, name: str) -> dict[str, Any]:
    path = out / name
    return json.loads(path.read_text()) if path.exists() else {}


def _judge(value: float, goal: float, higher: bool, gpu: bool) -> bool | None:
    if not gpu:
        return None  # CPU smoke runs are not held against GPU goals
    return value >= goal if higher else value <= goal


def summarize_encoder(out: Path, gpu: bool) -> tuple[str, str, bool | None]:
    data = _read(out, "encoder.json")
    rates = data["images_per_s"]
    figure = (
        f"{rates['jpeg bytes']:,.0f} images/s JPEG bytes -> vectors (model alone "
        f"{rates['model']:,.0f}; index build: device {rates['cases, device']:,.0f}, "
        f"Pillow workers {rates['cases, Pillow']:,.0f}; PNG {rates['png bytes']:,.0f})"
    )
    goal = GOALS["encoder"]
    return figure, f">= {goal:,.0f} images/s", _judge(rates["jpeg bytes"], goal, True, gpu)


def summarize_search(out: Path, gpu: bool) -> tuple[str, str, bool | None]:
    data = _read(out, "index.json").get("gpu", {})
    qps = data["batched_qps_including_transfers"]
    exact = data["same_rows_as_cpu_flat"]
    figure = (
        f"{qps:,.0f} queries/s ({data['backend']}, {data['n']:,} x {data['dim']}, "
        f"top-{data['k']} rows equal to faiss-cpu {exact:.4f})"
    )
    goal = GOALS["search"]
    verdict = _judge(qps, goal, True, gpu)
    if verdict is not None:
        verdict = verdict and exact >= 0.999  # fast and exact
    return figure, f">= {goal:,.0f} queries/s, exact", verdict


def summarize_generation(out: Path, gpu: bool) -> tuple[str, str, bool | None]:
    data = _read(out, "generation.json")["speed"]
    best = min(data["settings"], key=lambda s: s["s_per_image"])
    figure = (
        f"{best['s_per_image']:.4f} s/image at batch {best['batch_size']}"
        f"{' with static cache' if best['static_cache'] else ''} ({data['arch']}, "
        f"{data['image_size']} px, {data['max_new_tokens']} new tokens; one image per call "
        f"{data['seed000_s_per_image']:.3f} s/image)"
    )
    goal = GOALS["generation"]
    return figure, f"<= {goal} s/image", _judge(best["s_per_image"], goal, False, gpu)


def summarize_train(out: Path, gpu: bool) -> tuple[str, str, bool | None]:
    data = _read(out, "train.json")
    rates = data["samples_per_s"]
    figure = (
        f"{data['ratio']:.2f} x open_clip (medcap {rates['medcap']:,.0f}, open_clip "
        f"{rates['open_clip']:,.0f} samples/s; {data['model']}, batch {data['batch_size']})"
    )
    goal = GOALS["train"]
    return figure, f">= {goal} x open_clip", _judge(data["ratio"], goal, True, gpu)


def steps(workers: int) -> list[Step]:
    """The check's steps in order (the most telling first, training last: it takes longest)."""
    cpu_gen = [
        "--mode", "speed", "--arch", "tiny", "--device", "cpu", "--image-size", "56",
        "--max-new-tokens", "4", "--batch-sizes", "2", "--static", "0,1", "--images", "4",
        "--single-images", "1", "--timed-batches", "1", "--workers", "2",
    ]  # fmt: skip
    gpu_gen = [
        "--mode", "speed", "--arch", "2b", "--device", "cuda", "--image-size", "448",
        "--max-new-tokens", "128", "--batch-sizes", "64", "--static", "0,1", "--images", "128",
        "--single-images", "2", "--timed-batches", "1", "--workers", str(min(workers, 8)),
    ]  # fmt: skip
    # tests/gpu only: collecting the whole suite would import the app's and the metrics'
    # optional packages, which a GPU machine need not have.
    pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/gpu", "-rfEs"]
    return [
        Step(
            "gpu tests",
            pytest,
            [*pytest, "--collect-only"],
            180,
            ("pytest", "torch", "open_clip", "transformers", "peft", "faiss", "pyarrow"),
        ),
        Step(
            "encoder",
            _bench("bench_encoder.py", "--workers", str(workers)),
            _bench(
                "bench_encoder.py",
                "--device",
                "cpu",
                "--model",
                "medcap-tiny",
                "--n",
                "64",
                "--side",
                "96",
                "--batch-size",
                "16",
                "--workers",
                "1",
            ),  # fmt: skip
            90,
            ("torch", "torchvision", "open_clip", "PIL"),
            summarize_encoder,
        ),
        Step(
            "search",
            _bench("bench_index.py", "--sections", "gpu", "--n-build", "80000"),
            _bench(
                "bench_index.py",
                "--sections",
                "gpu",
                "--device",
                "cpu",
                "--n-build",
                "4000",
                "--gpu-queries",
                "2000",
            ),  # fmt: skip
            60,
            ("torch", "faiss", "pyarrow"),
            summarize_search,
        ),
        Step(
            "generation",
            _bench("bench_generation.py", *gpu_gen),
            _bench("bench_generation.py", *cpu_gen),
            210,
            ("torch", "transformers", "tokenizers", "pyarrow", "PIL"),
            summarize_generation,
        ),
        Step(
            "train",
            _bench("bench_train.py", "--steps", "60", "--workers", str(workers)),
            _bench(
                "bench_train.py",
                "--device",
                "cpu",
                "--model",
                "medcap-tiny",
                "--batch-size",
                "16",
                "--steps",
                "30",
                "--workers",
                "0",
            ),  # fmt: skip
            150,
            ("torch", "open_clip", "open_clip_train", "webdataset", "braceexpand", "pandas"),
            summarize_train,
        ),
    ]


def run_child(
    argv: list[str], log: Path, timeout_s: float, env: dict[str, str]
) -> tuple[str, float]:
    """Run `python argv...` in its own process group; ("ok" | "failed (exit N)" | "timeout",
    seconds). On timeout the whole group (the child and anything it started) is killed."""
    start = time.monotonic()
    with log.open("w") as handle:
        child = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=env, stdout=handle,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            code = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            return "timeout", time.monotonic() - start
    return ("ok" if code == 0 else f"failed (exit {code})"), time.monotonic() - start


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join("    " + line for line in text[-lines:])


def _git_status() -> str | None:
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _child_env(out: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.update(
        PYTHONDONTWRITEBYTECODE="1",  # no __pycache__ in the tree
        MEDCAP_CACHE_DIR=str(out / "cache"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        MPLBACKEND="Agg",
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("MEDCAP_TEST_CPU_ONLY", None)  # the gpu tests must see the GPU
    return env


def _tests_figure(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: temp)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="whole-run time limit")
    parser.add_argument("--workers", type=int, default=max(1, min(15, (os.cpu_count() or 2) - 1)))
    args = parser.parse_args(argv)
    out = (args.out or Path(tempfile.mkdtemp(prefix="medcap-gpu-check-"))).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = _child_env(out)
    tree_before = _git_status()
    deadline = time.monotonic() + args.budget_s
    plan = steps(args.workers)

    needed = sorted({m for s in plan for m in s.needs} | {"tokenizers", "safetensors"})
    status, seconds = run_child(
        ["-c", ENVIRONMENT, ",".join(needed)], out / "logs" / "environment.log", 120, env
    )
    text = (out / "logs" / "environment.log").read_text(errors="replace")
    info: dict[str, Any] = {"cuda": False, "missing": needed}
    if status == "ok":
        info = json.loads(text.strip().splitlines()[-1])
    gpu = bool(info.get("cuda"))
    device = info.get("device", "no CUDA device")
    versions = ", ".join(
        f"{name} {info.get(name, '?')}" for name in ("python", "torch", "transformers", "faiss")
    )
    print(f"medcap gpu-check on {device} ({versions}; {info.get('faiss_gpus', 0)} faiss GPUs)")
    print(f"results and logs in {out}")
    if not gpu:
        print(
            "no CUDA device: running the CPU parts only (gpu test collection and a small "
            "smoke run of each benchmark on the CPU); no GPU goal is judged"
        )
    rows: list[dict[str, Any]] = [
        {
            "step": "environment",
            "status": status,
            "seconds": seconds,
            "figure": device,
            "goal": "",
            "passed": None if status == "ok" else False,
        }
    ]
    for step in plan:
        row: dict[str, Any] = {"step": step.name, "goal": "", "figure": "", "passed": None}
        missing = [m for m in step.needs if m in info.get("missing", [])]
        left = deadline - time.monotonic()
        log = out / "logs" / f"{step.name.replace(' ', '_')}.log"
        if missing:
            row.update(status=f"missing {', '.join(missing)}", seconds=0.0, passed=False)
        elif left < MIN_STEP_S:
            row.update(status="no time left", seconds=0.0, passed=False)
        else:
            argv_step = step.gpu_args if gpu else step.cpu_args
            if step.summarize is not None:
                argv_step = [*argv_step, "--out", str(out)]
            row["status"], row["seconds"] = run_child(
                argv_step, log, min(step.timeout_s, left), env
            )
            if row["status"] != "ok":
                row["passed"] = False
                print(f"{step.name}: {row['status']}; last lines of {log}:\n{_tail(log)}")
            elif step.summarize is None:
                row["figure"] = _tests_figure(log)
                row["goal"] = "all pass" if gpu else "collected"
                row["passed"] = True if gpu else None
            else:
                try:
                    row["figure"], row["goal"], row["passed"] = step.summarize(out, gpu)
                except (KeyError, ValueError, TypeError) as exc:
                    row.update(status=f"no result ({type(exc).__name__}: {exc})", passed=False)
        rows.append(row)
        print(f"{step.name}: {row['status']} in {row['seconds']:.0f} s", flush=True)

    tree_after = _git_status()
    clean = tree_before is None or tree_before == tree_after
    _print_table(rows, gpu)
    if not clean:
        print("the source tree changed during the check:\n" + (tree_after or ""))
    failed = [r["step"] for r in rows if r["passed"] is False]
    report = {
        "device": device,
        "cuda": gpu,
        "environment": info,
        "rows": rows,
        "goals": GOALS,
        "tree_unchanged": clean,
        "failed": failed,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out / 'gpu_check.json'}")
    return 1 if failed or not clean else 0


def _print_table(rows: list[dict[str, Any]], gpu: bool) -> None:
    verdicts = {True: "PASS", False: "FAIL", None: "-" if gpu else "n/a (CPU)"}
    print()
    header = f"{'step':<12} {'status':<14} {'time':>6}  {'result':<10} {'goal':<30} figure"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['step']:<12} {str(r['status'])[:14]:<14} {r['seconds']:>5.0f}s  "
            f"{verdicts[r['passed']]:<10} {r['goal']:<30} {r['figure']}"
        )


if __name__ == "__main__":
    sys.exit(main())
