"""docs/study.md's "Bring your own archive" example, run from the page's own text.

The TOML and the commands are read from the markdown between their ``byoa-`` markers;
the paths are replaced as the page says: ``archive/unlabelled`` -> the shared DICOM films
(``dicom-cxr/``, through the cache), ``archive/films`` -> the NIH subset's PNGs,
``archive/labels.csv`` -> every fourth of them with its real ``Data_Entry_2017`` row
(Pneumonia 1 or 0), ``runs/`` -> a temporary folder.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shlex
from pathlib import Path

import pytest

from cxr_curriculum.__main__ import main

PAGE = Path(__file__).resolve().parents[1] / "docs" / "study.md"
pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("one_thread")]


def _between(text: str, marker: str, fence: str) -> str:
    block = re.search(rf"<!-- {marker} -->\n```{fence}\n(.*?)```\n<!-- /{marker} -->", text, re.S)
    assert block is not None, f"docs/study.md has no {marker} block"
    return block.group(1)


@pytest.mark.slow
def test_bring_your_own_archive_from_the_docs(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pydicom")
    text = PAGE.read_text(encoding="utf-8")
    toml, commands = _between(text, "byoa-toml", "toml"), _between(text, "byoa-commands", "bash")
    films = data_root / "nih-chestxray14-subset"
    names = sorted(p.name for p in films.rglob("*.png"))[::4]
    with gzip.open(data_root / "label-tables/Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        rows = {r["Image Index"]: r for r in csv.DictReader(fh) if r["Image Index"] in set(names)}
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "patient", "Pneumonia"])
        for name in names:
            found = rows[name]["Finding Labels"].split("|")
            w.writerow([name, rows[name]["Patient ID"], int("Pneumonia" in found)])
    for old, new in (
        ("archive/unlabelled", data_root / "dicom-cxr"),
        ("archive/films", films),
        ("archive/labels.csv", labels),
        ('"runs/', f'"{tmp_path}/runs/'),
    ):
        toml = toml.replace(str(old), str(new))
    (tmp_path / "byoa.toml").write_text(toml)
    for line in commands.splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[:3] == ["python", "-m", "cxr_curriculum"]
        argv = [str(tmp_path / a) if a == "byoa.toml" else a for a in argv[3:]]
        assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "task 'pneumonia' (auroc): 177 training and 73 test images; 72 test patients" in out
    assert "pretraining pool: 11 images" in out and "0 images of its test patients" in out
    report = (tmp_path / "runs/byoa/report.md").read_text()
    assert "| pneumonia | 1 | linear_probe | simclr - scratch |" in report
    data = json.loads((tmp_path / "runs/byoa/results.json").read_text())
    assert data["design"]["cells_done"] == 16
    assert data["design"]["pretraining_pool"]["images"] == 11
    source = data["design"]["tasks"][0]["source"]
    assert source["kind"] == "table" and source["split"] == {"test_share": 0.3, "seed": 0}
