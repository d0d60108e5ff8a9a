"""Study files for the tests: the tiny study on the bundled sample (scratch vs SimCLR,
Kermany k-NN, 32 px; ``benchmarks/_common.py``'s builder, which the worker benchmark runs
too), a one-task study and the study blocks of the docs."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))

from _common import tiny_study_toml  # noqa: E402  (benchmarks/ is on the path now)
from cxr_curriculum.config import load_study  # noqa: E402
from cxr_curriculum.study import Study  # noqa: E402

__all__ = ["DOCS", "docs_block", "one_task_study", "tiny_study_toml"]


def one_task_study(folder: Path, task_lines: str) -> Study:
    """A study of one ``[[tasks]]`` table (``task_lines``): scratch, one seed, k-NN at all
    labels, loaded from ``folder/study.toml`` (output ``folder/out``)."""
    path = folder / "study.toml"
    path.write_text(f"""
output = "{folder / "out"}"
seeds = [0]
[[arms]]
name = "scratch"
[[tasks]]
{task_lines}
[evaluation]
fractions = [1.0]
protocols = ["knn"]
""")
    return load_study(path)


DOCS = Path(__file__).resolve().parents[1] / "docs"


def docs_block(marker: str, page: str = "study.md") -> str:
    """The fenced block that follows ``<!-- marker -->`` in ``docs/<page>``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f"<!-- {marker} -->")
    body = text[start:].split("```", 2)[1]
    return body.split("\n", 1)[1]  # without the fence's language line
