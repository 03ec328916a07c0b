"""Item 12: an empty or blank text query is refused, in the CLI and in the library."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcap.errors import InputError
from tests.attack.helpers import one_error_line, run_cli


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_blank_text_is_refused_before_any_output(
    capsys: pytest.CaptureFixture[str], attack_index: Path, query_png: Path, text: str
) -> None:
    code, out, err = run_cli(capsys, "search", query_png, "--text", text, "--index", attack_index)
    assert code == 1 and out == ""
    assert "empty" in one_error_line(err)


def test_library_search_refuses_blank_text(attack_index: Path) -> None:
    from medcap.retrieval.retriever import open_retriever

    retriever = open_retriever(attack_index, device="cpu")
    with pytest.raises(InputError, match="query 2 of 2 is empty"):
        retriever.search_texts(["CT of the chest", " "], 3)
    assert len(retriever.search_texts(["CT of the chest"], 3)[0]) == 3
