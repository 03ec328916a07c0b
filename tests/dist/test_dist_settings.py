"""Ray settings without a cluster: pool sizes, refusals, the driver's node address, flags."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, DistConfig
from medcap.dist.cluster import RaySession, _driver_ip, pool_shape
from medcap.errors import InputError


def _session(cpus: float, gpus: float = 0) -> RaySession:
    return RaySession("127.0.0.2:6379", 2, cpus, gpus, 0.0)


def _cfg(**changes: object) -> DistConfig:
    return dataclasses.replace(DEFAULTS.dist, **changes)  # type: ignore[arg-type]


def test_one_gpu_actor_per_gpu_and_every_spare_cpu_decoding() -> None:
    shape = pool_shape(_session(cpus=64, gpus=8), _cfg())
    assert (shape.actors, shape.gpus, shape.cpus, shape.device) == (8, 1.0, 1.0, "cuda")
    assert shape.window == 8 * 2 + 56  # two calls queued per actor + one decode task per CPU


def test_cpu_clusters_get_an_actor_per_two_cpus() -> None:
    shape = pool_shape(_session(cpus=5), _cfg())
    assert (shape.actors, shape.gpus, shape.device, shape.threads) == (2, 0.0, "cpu", 1)
    assert pool_shape(_session(cpus=2), _cfg(cpus_per_actor=0.5)).actors == 2


def test_a_pool_the_cluster_cannot_hold_is_refused_in_one_line() -> None:
    with pytest.raises(InputError, match=r"3 actors .* do not fit the cluster \(3 CPUs"):
        pool_shape(_session(cpus=3), _cfg(actors=3))  # no CPU left to decode
    with pytest.raises(InputError, match="0 GPUs"):
        pool_shape(_session(cpus=8), _cfg(gpus_per_actor=1.0))


@pytest.mark.parametrize(
    ("address", "setting", "expected"),
    [
        ("127.0.0.2:6379", None, "127.0.0.2"),  # a loopback cluster: join as its node
        ("10.1.2.3:6379", None, None),  # another machine: Ray finds this node's address
        ("head.example:6379", None, None),
        ("127.0.0.2:6379", "127.0.0.5", "127.0.0.5"),  # the setting wins
        (None, None, None),
    ],
)
def test_the_driver_joins_a_loopback_cluster_on_loopback(
    address: str | None, setting: str | None, expected: str | None
) -> None:
    assert _driver_ip(_cfg(address=address, node_ip_address=setting)) == expected


def test_bad_settings_and_flags_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="dist.actors must be >= 1"):
        _cfg(actors=0)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    for argv in (
        ["caption", str(image), "--index", str(tmp_path), "--engine", "ray"],
        ["index", "build", "--data", str(tmp_path), "--out", "i", "--engine", "spark"],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
