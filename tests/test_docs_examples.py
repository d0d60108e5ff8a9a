"""Every ``python`` code block in ``docs/*.md`` runs as written.

The blocks of one page run in order in one namespace (a page may build on its earlier
blocks), in a temporary working directory, so that a renamed function or field cannot
leave a documented example wrong. Blocks that are not meant to run are written as
``bash`` or ``text``. README's quickstart is run by ``tests/test_readme.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text(encoding="utf-8"))

#: Text that a page's examples must print, where the page promises a figure.
EXPECTED_OUTPUT = {
    "data.md": [
        "KermanyPneumonia(32 images",
        "6784 624",
        "torch.Size([1000, 14]) 187",
        "1001 {'positive': 12",
    ],
}


def python_blocks(page: Path) -> list[str]:
    """The ``python`` fenced blocks of a markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def test_docs_have_examples() -> None:
    assert len(PAGES) >= 8, f"expected runnable examples in most docs pages, found {PAGES}"


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_docs_examples_run(
    page: Path,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CXR_DATA_ROOT", str(data_root.resolve()))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"__docs_{page.stem}__"}
    for i, code in enumerate(python_blocks(page)):
        exec(compile(code, f"docs/{page.name}#block{i}", "exec"), namespace)
    out = capsys.readouterr().out
    for text in EXPECTED_OUTPUT.get(page.name, []):
        assert text in out, f"docs/{page.name}: expected {text!r} in the printed output"
