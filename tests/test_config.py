"""Settings: every field checked in its section, set from a TOML file or `--set`, and read
by the commands through `config.current()`."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from medcap.cli import main
from medcap.config import DEFAULTS, MedcapConfig, current, field_types, use_config
from medcap.config_files import coerce, load_config, overrides_of
from medcap.errors import InputError


@pytest.fixture(autouse=True)
def _restore_config() -> Any:
    previous = current()
    yield
    use_config(previous)


def _sections() -> list[tuple[str, Any]]:
    return [(f.name, getattr(DEFAULTS, f.name)) for f in dataclasses.fields(MedcapConfig)]


def test_set_reaches_every_field_with_its_type() -> None:
    """Each field of each section can be set from text (here: back to its own default)."""
    assert overrides_of(DEFAULTS) == []
    count = 0
    for name, section in _sections():
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            text = (
                "none" if value is None
                else ("true" if value else "false") if isinstance(value, bool)
                else ",".join(map(str, value)) if isinstance(value, tuple)
                else str(value)
            )  # fmt: skip
            loaded = load_config(None, [f"{name}.{f.name}={text}"])
            assert getattr(getattr(loaded, name), f.name) == value, f"{name}.{f.name}"
            count += 1
    assert count > 120  # every field of every section, not a sample


def test_set_parses_types_and_changes_only_its_field() -> None:
    cfg = load_config(
        None,
        [
            "index.hnsw_ef_search=512",
            "retrieval.recall_ks=1,3",
            "train.max_minutes=none",
            "generation.static_cache=yes",
            "eval.concept_threshold=0.5",
            "generation.lora_targets=q_proj,v_proj",
        ],
    )
    assert cfg.index.hnsw_ef_search == 512 and cfg.retrieval.recall_ks == (1, 3)
    assert cfg.train.max_minutes is None and cfg.generation.static_cache is True
    assert cfg.eval.concept_threshold == 0.5
    assert cfg.generation.lora_targets == ("q_proj", "v_proj")
    assert cfg.index.hnsw_m == DEFAULTS.index.hnsw_m and cfg.data == DEFAULTS.data
    assert sorted(overrides_of(cfg)) == sorted(
        [
            "index.hnsw_ef_search=512",
            "retrieval.recall_ks=1,3",
            "generation.static_cache=true",
            "eval.concept_threshold=0.5",
            "generation.lora_targets=q_proj,v_proj",
        ]
    )
    assert load_config(None, overrides_of(cfg)) == cfg  # what `medcap app` hands its server


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("index.hnsw_ef_search=many", r"^--set index.hnsw_ef_search=many: .* takes an integer$"),
        ("index.nprobe=4", r"index has no field 'nprobe'; valid: .*ivf_nprobe"),
        ("search.k=4", r"unknown config section 'search'; valid: data, encoder"),
        ("retrieval.k", r"write it as section.field=value"),
        ("retrieval.k=0", r"retrieval.k must be >= 1, got 0"),
        ("retrieval.mode=pixels", r"retrieval.mode takes one of captions, images$"),
        ("train.aug_brightness=1.5", r"train.aug_brightness must be in \[0, 1\), got 1.5"),
        ("generation.static_cache=maybe", r"takes true or false"),
        ("data.phantom_split_fractions=0.5,0.5", r"takes 3 comma-separated values"),
        ("app.max_k=2", r"app.max_k must be >= app.k \(9\), got 2"),
    ],
)
def test_bad_settings_are_one_line_errors(setting: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_config(None, [setting])
    assert "\n" not in str(info.value)


def test_every_section_checks_its_values() -> None:
    bad = {
        "data": {"phantom_split_fractions": (0.5, 0.6, 0.1)},
        "encoder": {"precision": "fp64"},
        "train": {"grad_accum_steps": 0},
        "index": {"index_type": "lsh"},
        "retrieval": {"recall_ks": ()},
        "refine": {"roi_weight": 1.5},
        "generation": {"lora_dropout": 1.0},
        "eval": {"concept_threshold": 0.0},
        "app": {"port": 70000},
        "demo": {"epochs": 0},
        "serve": {"batch_max_size": 0},
        "dist": {"stall_timeout_s": 0.0},
        "dicom": {"workers": 0},
    }
    assert set(bad) == {f.name for f in dataclasses.fields(MedcapConfig)}
    for name, changes in bad.items():
        with pytest.raises(InputError, match=name):
            dataclasses.replace(getattr(DEFAULTS, name), **changes)


def test_closed_choices_are_literals_checked_by_every_section() -> None:
    for name, section in _sections():
        for field, kind in field_types(type(section)).items():
            if typing.get_origin(kind) is typing.Literal:
                with pytest.raises(InputError, match=rf"\({name}\.{field}\); valid: "):
                    dataclasses.replace(section, **{field: "no-such-choice"})


def test_config_file_sections_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "medcap.toml"
    path.write_text("[retrieval]\nk = 3\nrecall_ks = [1, 2]\n[index]\nmemory_budget_gb = 2\n")
    cfg = load_config(path, ["retrieval.k=4"])  # --set applies after the file
    assert (cfg.retrieval.k, cfg.retrieval.recall_ks, cfg.index.memory_budget_gb) == (
        4,
        (1, 2),
        2.0,
    )
    path.write_text("[retrieval]\nk = 'three'\n")
    with pytest.raises(InputError, match=r"medcap.toml: \[retrieval\] k = 'three': expected an"):
        load_config(path)
    path.write_text("[retrieval]\nk = 0\n")
    with pytest.raises(InputError, match=r"medcap.toml: retrieval.k must be >= 1, got 0"):
        load_config(path)
    path.write_text("k = 3\n")
    with pytest.raises(InputError, match=r"k = \.\.\. must be a table"):
        load_config(path)
    path.write_text("[retrieval\n")
    with pytest.raises(InputError, match="is not valid TOML"):
        load_config(path)
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_coerce_keeps_types_apart() -> None:
    assert coerce(True, bool) is True and coerce("off", bool) is False
    assert coerce(3, float) == 3.0 and coerce("2.5", float | None) == 2.5
    for value, kind in ((True, int), (1, bool), (1.5, int), ("x", float), (3, str)):
        with pytest.raises(ValueError):
            coerce(value, kind)


def test_commands_read_the_active_config(
    phantom_index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", "--index", str(phantom_index_dir), "--text", "CT of the chest", "--json"]
    assert main(["--set", "retrieval.k=2", *argv]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["hits"]) == 2
    settings = tmp_path / "medcap.toml"
    settings.write_text("[retrieval]\nk = 3\ntext_mode = 'captions'\n")
    assert main(["--config", str(settings), *argv]) == 0
    [found] = json.loads(capsys.readouterr().out)
    assert len(found["hits"]) == 3 and found["mode"] == "captions"
    assert main(["--config", str(settings), *argv, "--k", "4"]) == 0  # flags still win
    assert len(json.loads(capsys.readouterr().out)[0]["hits"]) == 4
    assert main(["--set", "retrieval.k=zero", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set retrieval.k=zero") and "\n" not in err


def test_current_is_defaults_until_set() -> None:
    use_config(DEFAULTS)
    assert current() is DEFAULTS
    changed = load_config(None, ["demo.epochs=1"])
    assert use_config(changed) is DEFAULTS and current().demo.epochs == 1


def test_cli_settings_hold_for_one_call(tmp_path: Path) -> None:
    before = current()
    assert main(["--set", "retrieval.k=2", "index", "info", str(tmp_path / "none")]) == 1
    assert current() is before  # a notebook or test calling main() keeps its own config
