"""Prompt templates: selection by name or path, placeholders, k, hints and provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcap.errors import InputError
from medcap.generation.prompt import build_prompt, list_templates, render_template
from tests.generation.gen_helpers import make_hits


def test_builtin_templates_are_listed_and_all_render() -> None:
    names = list_templates()
    assert {"default", "smallcap", "concise"} <= set(names)
    hits = make_hits(["CT of the chest.", "MRI of the brain."])
    for name in names:
        text = build_prompt(hits, template=name, k=2).text
        assert "CT of the chest." in text and "MRI of the brain." in text
        assert "{" not in text


def test_prompt_takes_top_k_in_rank_order_and_keeps_provenance() -> None:
    hits = make_hits([f"caption number {i}" for i in range(6)])
    prompt = build_prompt(list(reversed(hits)), k=3)
    assert prompt.neighbour_ids == ("case-0", "case-1", "case-2")
    assert prompt.neighbour_scores == tuple(h.score for h in hits[:3])
    text = prompt.text
    assert (
        text.index("caption number 0")
        < text.index("caption number 1")
        < text.index("caption number 2")
    )
    assert "caption number 3" not in text
    assert prompt.template == "default"


def test_smallcap_template_matches_its_paper_form() -> None:
    hits = make_hits(["CT of the chest", "MRI of the brain."])
    text = build_prompt(hits, template="smallcap", k=4).text
    assert text == "Similar images show CT of the chest. MRI of the brain. This image shows"


def test_modality_hint_appears_only_when_given() -> None:
    hits = make_hits(["CT of the chest."])
    with_hint = build_prompt(hits, template="concise", k=1, modality_hint="CT").text
    without = build_prompt(hits, template="concise", k=1).text
    assert "Imaging modality: CT." in with_hint
    assert "modality" not in without.lower()
    assert "\n\n" not in without  # the empty hint line is dropped


def test_repeated_captions_are_shown_once_but_kept_as_neighbours() -> None:
    hits = make_hits(["CT of the chest.", "ct of the chest.", "MRI of the brain."])
    prompt = build_prompt(hits, template="concise", k=3)
    assert prompt.text.lower().count("ct of the chest.") == 1
    assert len(prompt.neighbour_captions) == 3


def test_messages_hold_an_image_then_the_text() -> None:
    prompt = build_prompt(make_hits(["CT of the chest."]), k=1)
    (message,) = prompt.messages
    assert message["role"] == "user"
    assert [item["type"] for item in message["content"]] == ["image", "text"]
    assert message["content"][1]["text"] == prompt.text


def test_user_template_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("Neighbours ({k}): {captions_inline}\nAnswer:")
    text = render_template(str(path), ["A cyst.", "A mass"])
    assert text == "Neighbours (2): A cyst. A mass.\nAnswer:"


def test_bad_templates_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown prompt template 'nope'.*default"):
        build_prompt(make_hits(["x"]), template="nope", k=1)
    bad = tmp_path / "bad.txt"
    bad.write_text("Use {neighbors} here")
    with pytest.raises(InputError, match=r"unknown placeholders \['neighbors'\]") as info:
        render_template(str(bad), ["x"])
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="k must be >= 1"):
        build_prompt(make_hits(["x"]), k=0)
