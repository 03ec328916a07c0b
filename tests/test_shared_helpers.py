"""Helpers every package shares: first_line, now_iso, the offline check."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from medcap.clock import now_iso
from medcap.errors import OfflineFetchError, first_line
from medcap.offline import is_offline, offline_variables


def test_first_line_of_an_exception() -> None:
    assert first_line(ValueError("\n\n  bad thing happened  \nsecond line")) == "bad thing happened"
    assert first_line(OSError()) == "OSError"
    assert first_line(RuntimeError("x" * 50), 10) == "x" * 10


def test_now_iso_is_utc_to_the_second() -> None:
    stamp = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stamp)
    assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


ALL_VARIABLES = {*offline_variables("datasets"), *offline_variables("models")}


@pytest.mark.parametrize(
    ("variable", "datasets", "models"),
    [
        ("MEDCAP_OFFLINE", True, True),
        ("HF_HUB_OFFLINE", True, True),
        ("HF_DATASETS_OFFLINE", True, False),
        ("TRANSFORMERS_OFFLINE", False, True),
    ],
)
def test_each_offline_variable_turns_its_fetches_off(
    variable: str, datasets: bool, models: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not is_offline("datasets") and not is_offline("models")
    monkeypatch.setenv(variable, "yes")
    assert (is_offline("datasets"), is_offline("models")) == (datasets, models)
    monkeypatch.setenv(variable, "0")
    assert not is_offline("datasets") and not is_offline("models")


def test_medcap_offline_covers_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from medcap.data.readers import open_dataset

    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("MEDCAP_OFFLINE", "1")
    with pytest.raises(OfflineFetchError, match="cannot fetch dataset medcap-tests/absent"):
        open_dataset("medcap-tests/absent")
