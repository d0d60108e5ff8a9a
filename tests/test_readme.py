"""README's promises: the quickstart runs as written, and CI runs README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _block(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```\w*\n(.*?)```\s*<!-- /{marker} -->", README, re.S)
    assert match, f"README.md has no <!-- {marker} --> block"
    return match.group(1)


def test_readme_has_the_two_setup_commands() -> None:
    demo = _block("demo-command")
    tests = _block("test-command")
    assert "cxr_curriculum.demo" in demo
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "test-command" in ci and "README.md" in ci
    assert "-eq 5" in ci, ".ci/run must treat pytest's exit code 5 (no tests) as a failure"


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = _block("quickstart")
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(code, "README.md#quickstart", "exec"), namespace)
    assert "report" in namespace


@pytest.mark.slow
def test_docs_quickstart_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/quickstart.md has no python example"
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/quickstart.md#{i}", "exec"), {"__name__": "__docs__"})
    assert (tmp_path / "runs" / "quickstart").is_dir()
