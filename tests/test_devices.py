"""`--device` resolution: unknown names, missing CUDA, and GPU ordinals past the last GPU."""

from __future__ import annotations

import pytest
import torch

from medcap.devices import check_cuda_ordinal, resolve_device
from medcap.errors import InputError


@pytest.mark.parametrize(("device", "count"), [("cuda:1", 1), ("cuda:4", 4), ("cuda:0", 0)])
def test_an_ordinal_past_the_last_gpu_is_one_line(device: str, count: int) -> None:
    with pytest.raises(InputError, match="does not exist") as info:
        check_cuda_ordinal(torch.device(device), count)
    message = str(info.value)
    assert "\n" not in message and f"{count} CUDA GPU(s) visible" in message
    assert device in message


@pytest.mark.parametrize(("device", "count"), [("cuda", 1), ("cuda:0", 1), ("cuda:3", 4)])
def test_existing_gpus_pass(device: str, count: int) -> None:
    check_cuda_ordinal(torch.device(device), count)


def test_cpu_and_auto_resolve_and_nonsense_is_refused() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("gpu7")


def test_ordinals_are_checked_against_this_machine() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(InputError, match="CUDA"):
        resolve_device(f"cuda:{count}")  # one past the last GPU (or no CUDA at all)
