"""Shared helpers of the benchmark scripts: write results JSON and a markdown table.

Every benchmark calls :func:`write_results`, which records the machine, the library
versions, the exact command and the date next to the numbers, in
``benchmarks/results/<name>.json`` and ``docs/benchmarks/<name>.md``.
:func:`tiny_study_toml` writes the tiny study on the bundled sample that the worker
benchmark and the tests run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxr_curriculum.study import provenance

__all__ = [
    "REPO",
    "machine_info",
    "markdown_table",
    "tiny_study_toml",
    "versions",
    "write_results",
]

#: Repository root (the parent of ``benchmarks/``).
REPO = Path(__file__).resolve().parent.parent

#: Libraries the benchmarks compare against, recorded beside the library's own.
_COMPARED = ("lightly", "scikit-learn", "grad-cam")


def versions() -> dict[str, str]:
    """Installed versions of Python, this package and the libraries benchmarks use."""
    return provenance.versions(extra=_COMPARED)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """The study's machine record (CPU, cores, threads, load, GPU) plus affinity and niceness."""
    info = provenance.machine_info()
    with contextlib.suppress(AttributeError):
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        info["niceness"] = os.nice(0)
    if "gpu" in info:
        import torch

        info["gpu_count"] = torch.cuda.device_count()
    return info


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of flat dicts (columns: the union of keys, in first-seen order)."""
    if not rows:
        return "_no rows_\n"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    markdown: str | None = None,
    title: str | None = None,
    notes: str | None = None,
    columns: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``benchmarks/results/<name>.json`` and ``docs/benchmarks/<name>.md``.

    With the environment variable ``CXR_BENCH_OUT`` set (the GPU suite sets it), both
    files go to that folder instead of the repository.

    Args:
        name: File stem, e.g. ``"ssl_throughput"``.
        rows: The results: a list of flat dicts (one table row each) or one dict.
        config: The settings of the run (e.g. ``vars(args)``).
        markdown: Markdown body for the docs page; defaults to a table of ``rows``.
        title: Page title; defaults to ``name``.
        notes: Text placed under the header of the docs page (what the numbers mean).
        columns: Table columns when ``markdown`` is not given.

    Returns:
        The JSON path and the markdown path.
    """
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    machine = machine_info()
    vers = versions()
    record: dict[str, Any] = {
        "name": name,
        "date": now.isoformat(),
        "command": command,
        "git_commit": _git_commit(),
        "machine": machine,
        "versions": vers,
        "config": dict(config or {}),
        "results": rows if isinstance(rows, Mapping) else list(rows),
    }
    out = os.environ.get("CXR_BENCH_OUT")
    json_path = (Path(out) if out else REPO / "benchmarks" / "results") / f"{name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    where = machine.get("gpu") or f"{machine['cpu']} ({machine['cpu_count']} cores)"
    vers_text = ", ".join(f"{k} {v}" for k, v in vers.items())
    body = markdown
    if body is None:
        body = markdown_table([rows] if isinstance(rows, Mapping) else rows, columns)
    header = [
        f"# {title or name}",
        "",
        f"- Command: `{command}`",
        f"- Machine: {where}; load average at the end {machine.get('load_average_1m', '?')}",
        f"- Date: {now.strftime('%Y-%m-%d %H:%M UTC')}; commit {record['git_commit'] or '?'}",
        f"- Versions: {vers_text}",
        f"- Raw results: `benchmarks/results/{name}.json`",
        "",
    ]
    if notes:
        header += [notes.strip(), ""]
    md_path = (Path(out) if out else REPO / "docs" / "benchmarks") / f"{name}.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(header) + "\n" + body)
    return json_path, md_path


def tiny_study_toml(
    output: str | os.PathLike[str],
    *,
    steps: int = 1,
    arms: Sequence[str] = ("scratch", "simclr"),
    seeds: Sequence[int] = (0, 1),
    image_size: int = 32,
    protocols: Sequence[str] = ("knn",),
    evaluation: str = "",
    top: str = "",
) -> str:
    """The TOML of a tiny study on the bundled sample (Kermany task, all labels, batch 8).

    By default 2 arms x 2 seeds, scratch vs SimCLR, 4 units of one k-NN cell each.

    Args:
        output: The study folder.
        steps: Pretraining steps of each arm other than ``"scratch"``.
        arms: ``"scratch"`` (no pretraining) or a method name (one stage of ``steps``
            steps); with any such arm the bundled sample is the pretraining pool.
        seeds: The study's seeds.
        image_size: Pretraining and evaluation image size.
        protocols: Evaluation protocols.
        evaluation: Extra lines of the ``[evaluation]`` table.
        top: Extra top-level lines (e.g. ``threads = 1``).
    """
    lines = [top, f'output = "{output}"', f"seeds = {list(seeds)}", "batch_size = 8"]
    lines.append(f"image_size = {image_size}")
    if any(arm != "scratch" for arm in arms):
        lines += ["[data]", 'source = "sample"']
    for arm in arms:
        lines += ["[[arms]]", f'name = "{arm}"']
        if arm != "scratch":
            lines.append(f'stages = [{{ method = "{arm}", steps = {steps} }}]')
    lines += ["[[tasks]]", 'kind = "kermany"', 'root = "sample"', "[evaluation]"]
    lines += ["fractions = [1.0]", f"protocols = {json.dumps(list(protocols))}", evaluation]
    return "\n".join(lines)
