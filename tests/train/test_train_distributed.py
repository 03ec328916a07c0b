"""Two CPU processes on gloo: exact global-batch gradients, and `torchrun ... medcap train`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medcap.config import DEFAULTS

BATCH = 32


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(BATCH, 3, 64, 64, generator=generator)
    tokens = torch.randint(1, 1000, (BATCH, 32), generator=generator)
    return pixels, tokens


def siglip_config(folder: Path) -> Path:
    """medcap-tiny with a SigLIP-style logit bias (open_clip's `init_logit_bias`)."""
    from medcap.encoder.spec import MODEL_CONFIG_DIR

    config = json.loads((MODEL_CONFIG_DIR / "medcap-tiny.json").read_text())
    path = folder / "tiny-siglip.json"
    path.write_text(json.dumps({**config, "init_logit_bias": -10.0}))
    return path


def _step(
    world_size: int, rank: int, accum: int, model: str = "medcap-tiny", steps: int = 1
) -> dict[str, torch.Tensor]:
    """`steps` optimizer steps of this process's share of the fixed global batch (SigLIP runs
    take the gather for equal-sized batches, which skips the size exchange)."""
    from medcap.train.setup import build_run
    from medcap.train.step import train_step

    cfg = dataclasses.replace(
        DEFAULTS.train, batch_size=BATCH // world_size // accum, grad_accum_steps=accum,
        device="cpu", lr=1e-3,
    )  # fmt: skip
    run = build_run(model, cfg, rank, world_size, torch.device("cpu"))
    run.equal_batches = model != "medcap-tiny"
    # Plain SGD: the step is the gradient itself. (Adam's first step is lr * sign(grad), which
    # turns float noise on zero gradients, such as the attention key biases', into lr.)
    run.optimizer = torch.optim.SGD(run.core.parameters(), lr=1.0)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda step: 1.0)
    pixels, tokens = _batch()
    share = BATCH // world_size
    pixels, tokens = (
        pixels[rank * share : (rank + 1) * share],
        tokens[rank * share : (rank + 1) * share],
    )
    size = share // accum
    micro = [
        (pixels[i * size : (i + 1) * size], tokens[i * size : (i + 1) * size]) for i in range(accum)
    ]
    for _ in range(steps):
        train_step(run, micro)
    return {k: v.detach().clone() for k, v in run.core.state_dict().items()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        for accum in (1, 2):
            state = _step(2, rank, accum)
            if rank == 0:
                torch.save(state, Path(out_dir) / f"ddp_accum{accum}.pt")
    finally:
        dist.destroy_process_group()


def _siglip_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = str(Path(out_dir) / "tiny-siglip.json")
        for accum in (1, 2):
            # Two steps: DDP reports a parameter without a gradient at the step after it.
            state = _step(2, rank, accum, model, steps=2)
            if rank == 0:
                torch.save(state, Path(out_dir) / f"siglip_accum{accum}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = _step(1, 0, 1)
    for accum in (1, 2):
        ddp = torch.load(tmp_path / f"ddp_accum{accum}.pt", weights_only=True)
        for key, value in single.items():
            torch.testing.assert_close(
                ddp[key], value, atol=1e-5, rtol=1e-4, msg=f"{key} accum {accum}"
            )


def test_siglip_logit_bias_trains_under_ddp_like_one_process(tmp_path: Path) -> None:
    model = str(siglip_config(tmp_path))
    mp.spawn(_siglip_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = _step(1, 0, 1, model, steps=2)
    assert float(single["logit_bias"]) != -10.0  # the bias got gradients
    for accum in (1, 2):
        ddp = torch.load(tmp_path / f"siglip_accum{accum}.pt", weights_only=True)
        for key, value in single.items():
            torch.testing.assert_close(
                ddp[key], value, atol=1e-5, rtol=1e-4, msg=f"{key} accum {accum}"
            )


def test_torchrun_two_cpu_processes(phantom_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp_run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
        "--nproc_per_node", "2", "-m", "medcap", "train", "--data", str(phantom_dir),
        "--out", str(out), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    assert config["steps_per_epoch"] == 160 // (2 * 16)
    assert "trained 5 steps" in done.stdout
    from medcap.encoder import load_encoder

    encoder = load_encoder(str(out), device="cpu")
    assert encoder.encode_texts(["CT of the chest"]).shape == (1, 64)
