"""A tiny study file on the bundled sample (scratch vs SimCLR, Kermany k-NN, 32 px)."""

from __future__ import annotations

from pathlib import Path


def tiny_study_toml(output: Path, *, steps: int = 1, evaluation: str = "", top: str = "") -> str:
    """The TOML of a 2-arm x 2-seed study: 4 units of one k-NN cell each.

    ``output`` is the study folder, ``steps`` SimCLR's steps, ``evaluation`` extra lines
    of the ``[evaluation]`` table, ``top`` extra top-level lines (e.g. ``threads = 1``).
    """
    return f"""{top}
output = "{output}"
seeds = [0, 1]
batch_size = 8
image_size = 32
[data]
source = "sample"
[[arms]]
name = "scratch"
[[arms]]
name = "simclr"
stages = [{{ method = "simclr", steps = {steps} }}]
[[tasks]]
kind = "kermany"
root = "sample"
[evaluation]
fractions = [1.0]
protocols = ["knn"]
{evaluation}"""


DOCS = Path(__file__).resolve().parents[1] / "docs"


def docs_block(marker: str, page: str = "study.md") -> str:
    """The fenced block that follows ``<!-- marker -->`` in ``docs/<page>``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(f"<!-- {marker} -->")
    body = text[start:].split("```", 2)[1]
    return body.split("\n", 1)[1]  # without the fence's language line
