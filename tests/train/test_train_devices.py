"""The device of each training process: `cuda` and `auto` mean this process's own GPU."""

from __future__ import annotations

import pytest

from medcap.errors import InputError
from medcap.train.setup import process_device


@pytest.mark.parametrize("setting", ["auto", "cuda"])
def test_gpu_settings_map_to_the_local_rank(setting: str) -> None:
    assert process_device(setting, 3, 4, cuda=True) == "cuda:3"
    assert process_device(setting, 0, 1, cuda=True) == "cuda:0"


def test_without_cuda_settings_pass_through() -> None:
    assert process_device("auto", 1, 2, cuda=False) == "auto"  # resolves to the CPU
    assert process_device("cpu", 1, 2, cuda=True) == "cpu"
    assert process_device("cuda:1", 0, 1, cuda=True) == "cuda:1"  # one process: as asked


def test_a_fixed_gpu_for_several_processes_is_refused() -> None:
    with pytest.raises(InputError, match="all 2 processes on one GPU") as info:
        process_device("cuda:0", 1, 2, cuda=True)
    assert "\n" not in str(info.value)
