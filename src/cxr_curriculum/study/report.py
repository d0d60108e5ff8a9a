"""The study's markdown report and figures (figures need the ``plot`` extra: matplotlib).

Both read the dict of :meth:`StudyResults.to_dict`, so a report can be rebuilt from a
``results.json`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown_report", "write_figures"]


def _f(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.{digits}f}"
    return str(value)


def _signed(value: float) -> str:
    return "nan" if value != value else f"{value:+.3f}"


#: Faithfulness columns of the attention table, with their headers.
_FAITHFULNESS = {
    "deletion": "deletion",
    "insertion": "insertion",
    "road": "ROAD",
    "lung_drop": "lung drop",
    "outside_drop": "outside drop",
    "lung_effect": "lung effect",
    "lung_effect_salient": "lung effect (salient order)",
}


def _ci_cell(stat: dict[str, Any]) -> str:
    return f"{_f(stat['estimate'])} [{_f(stat['low'])}, {_f(stat['high'])}]"


def _p(value: float | None) -> str:
    """A p-value, or "-" where there is none (``None``/NaN: one seed, no DeLong test)."""
    return "-" if value is None or value != value else f"{value:.2g}"


def _delong(row: dict[str, Any]) -> str:
    """One seed's difference and DeLong p-value ("-" for a metric without DeLong's test)."""
    return f"{row['difference']:+.3f} (p={_p(row.get('delong_p_value'))})"


def _seeds_cell(stat: dict[str, Any]) -> str:
    """Seeds behind an attention mean, and those without one (every map empty)."""
    missing = stat.get("seeds_without_value") or []
    text = str(stat.get("n_seeds"))
    return f"{text} (none for seed {', '.join(str(s) for s in missing)})" if missing else text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def markdown_report(data: dict[str, Any]) -> str:
    """A markdown page of a study's results (every number, whichever way it points)."""
    design = data["design"]
    lines = [
        "# Study report",
        "",
        f"- Command: `{data['command']}`",
        f"- Date: {data['date']}; machine: {data['machine'].get('gpu') or data['machine']['cpu']}"
        f" ({data['machine']['cpu_count']} cores), torch threads used by cells: "
        f"{design['threads_used']}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in data['versions'].items())}",
        f"- Cells: {design['cells_done']} of {design['cells_total']} done; seeds {design['seeds']};"
        f" pretraining budget per arm: {design['budget']['steps']} steps, "
        f"{design['budget']['images']} images",
        "",
    ]
    for arm, why in design["not_measured"].items():
        lines += [f"- Arm `{arm}`: {why}", ""]
    pool = design.get("pretraining_pool") or {}
    if pool:
        lines += [f"- Pretraining pool: {pool['images']} images.", ""]
    for task, e in pool.get("test_patients_images", {}).items():
        if pool["exclude_test_patients"]:
            lines += [
                f"- Task `{task}`: {e['removed']} pool images of its test patients were removed "
                f"from pretraining ({e['by_file']} test images, {e['by_patient']} other images "
                "of test patients).",
                "",
            ]
        elif e["removed"]:
            lines += [
                f"- Task `{task}`: {e['removed']} pool images belong to its test patients and "
                f"were left in (exclude_test_patients = false; {e['by_file']} are test images).",
                "",
            ]
    for task, n in design.get("test_images_in_pretraining", {}).items():
        if n:
            lines += [
                f"- Task `{task}`: {n} test images are also in the pretraining pool "
                "(unlabelled, transductive use); its comparisons are not clean.",
                "",
            ]
    lines += [
        "## Metric per arm (mean over seeds, 95 % CI over seeds and test patients)",
        "",
    ]
    lines += _table(
        ["task", "labels", "protocol", "arm", "mean", "95% CI", "per seed"],
        [
            [
                r["task"],
                f"{r['fraction']:g}",
                r["protocol"],
                r["arm"],
                _f(r["estimate"]),
                f"[{_f(r['low'])}, {_f(r['high'])}]",
                " / ".join(_f(v) for v in r["per_seed"]),
            ]
            for r in data["arm_metrics"]
        ],
    )
    family = data.get("multiplicity", {})
    sizes = ", ".join(f"{t}: {n}" for t, n in family.get("tests", {}).items())
    lines += [
        "## Pairwise differences (arm a - arm b, paired by seed and test patient)",
        "",
        "CI and p: over seeds and test patients (between-seed variance plus the test-set "
        "variance shared by every seed, Weerahandi's generalized interval: Student's t with "
        "S-1 degrees of freedom when seeds dominate); p is the test that inverts the CI. "
        f"p Holm / p BH: adjusted over the family of {family.get('family', 'one task')} "
        f"(tests per family: {sizes or 'none'}). wins: share of seeds where arm a is higher; "
        "DeLong p per seed covers the test set only (- where the metric has none).",
        "",
    ]
    rows = []
    for c in data["comparisons"]:
        d = c["difference"]
        holds = "yes" if (d["low"] > 0 or d["high"] < 0) else "no"
        delong = ", ".join(_delong(s) for s in c["per_seed"])
        rows.append(
            [
                c["task"],
                f"{c['fraction']:g}",
                c["protocol"],
                f"{c['arm_a']} - {c['arm_b']}",
                _signed(d["difference"]),
                f"[{_signed(d['low'])}, {_signed(d['high'])}]",
                _p(d["p_value"]),
                _p(d.get("p_holm")),
                _p(d.get("p_bh")),
                holds,
                f"{c['share_a_wins']:.2f}",
                delong,
            ]
        )
    lines += _table(
        [
            "task",
            "labels",
            "protocol",
            "a - b",
            "mean diff",
            "95% CI",
            "p",
            "p Holm",
            "p BH",
            "excludes 0",
            "wins",
            "per seed (DeLong)",
        ],
        rows,
    )
    if data.get("findings"):
        lines += ["## Per-finding AUROC (multi-label tasks; mean over seeds, 95 % CI)", ""]
        lines += _table(
            ["task", "labels", "protocol", "arm", "finding", "test positives", "mean", "95% CI"],
            [
                [
                    r["task"],
                    f"{r['fraction']:g}",
                    r["protocol"],
                    r["arm"],
                    r["finding"],
                    r["positives"],
                    _f(r["estimate"]),
                    f"[{_f(r['low'])}, {_f(r['high'])}]",
                ]
                for r in data["findings"]
            ],
        )
    if data["attention"]:
        lines += [
            "## Lung attention of fine-tuned models (mean over seeds, 95 % CI)",
            "",
            "Masks: `predicted` = the bundled lung segmenter's; otherwise the task's own masks "
            "(scored on the same saliency maps and images). Seeds: the seeds whose model has "
            "at least one non-empty map (a map with no positive saliency has no lung metric).",
            "",
        ]
        extra = [m for m in _FAITHFULNESS if any(m in r for r in data["attention"])]
        if extra:
            lines += [
                "Faithfulness columns (class probability; mean [95 % CI]): deletion lower and "
                "insertion and road higher = a more faithful map; lung/outside drop: mean "
                "drop as the same number of lung or outside pixels is removed in random "
                "order; lung effect = their difference (> 0: the decision rests more "
                "inside the lungs). See docs/attention.md.",
                "",
            ]
        lines += _table(
            ["task", "labels", "arm", "masks", "seeds", "lift", "lift CI", "energy in lungs"]
            + ["energy CI"]
            + [_FAITHFULNESS[m] for m in extra],
            [
                [
                    r["task"],
                    f"{r['fraction']:g}",
                    r["arm"],
                    r.get("masks", "predicted"),
                    _seeds_cell(r["lift"]),
                    _f(r["lift"]["estimate"]),
                    f"[{_f(r['lift']['low'])}, {_f(r['lift']['high'])}]",
                    _f(r["energy_in_mask"]["estimate"]),
                    f"[{_f(r['energy_in_mask']['low'])}, {_f(r['energy_in_mask']['high'])}]",
                ]
                + [_ci_cell(r[m]) if m in r else "" for m in extra]
                for r in data["attention"]
            ],
        )
    if data["attention_correlation"]:
        lines += ["## AUROC vs lung attention (Spearman over fine-tuned models)", ""]
        lines += _table(
            ["task", "labels", "masks", "attention", "rho", "95% CI", "models", "runs"],
            [
                [
                    r["task"],
                    r["fraction"] if isinstance(r["fraction"], str) else f"{r['fraction']:g}",
                    r.get("masks", "predicted"),
                    r["attention"],
                    _signed(r["rho"]),
                    f"[{_signed(r['low'])}, {_signed(r['high'])}]",
                    r["n_models"],
                    r["n_clusters"],
                ]
                for r in data["attention_correlation"]
            ],
        )
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "study figures need matplotlib: pip install 'cxr_curriculum[plot]'"
        ) from err
    return plt


def write_figures(data: dict[str, Any], folder: str | os.PathLike[str]) -> list[Path]:
    """AUROC vs label fraction per arm (CI bands) and lung lift vs AUROC per model.

    Raises:
        ImportError: Without matplotlib (the ``plot`` extra); the message says so.
    """
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = data["arm_metrics"]
    for task, protocol in sorted({(r["task"], r["protocol"]) for r in rows}):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arm in dict.fromkeys(r["arm"] for r in rows):
            sel = sorted(
                (r for r in rows if (r["task"], r["protocol"], r["arm"]) == (task, protocol, arm)),
                key=lambda r: r["fraction"],
            )
            if not sel:
                continue
            x = [r["fraction"] for r in sel]
            y = [r["estimate"] for r in sel]
            low, high = [r["low"] for r in sel], [r["high"] for r in sel]
            err = [
                [e - lo for e, lo in zip(y, low, strict=True)],
                [hi - e for e, hi in zip(y, high, strict=True)],
            ]
            line = ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=arm)
            ax.fill_between(x, low, high, alpha=0.15, color=line[0].get_color())
        ax.set_xscale("log")
        ax.set_xlabel("share of training labels")
        ax.set_ylabel("test AUROC (mean over seeds)")
        ax.set_title(f"{task}, {protocol}")
        ax.legend(fontsize=7)
        path = folder / f"auroc_vs_labels_{task}_{protocol}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    cells = [c for c in data["cells"] if "attention_mean" in c]
    if cells:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for arm in dict.fromkeys(c["arm"] for c in cells):
            sel = [c for c in cells if c["arm"] == arm]
            ax.scatter(
                [c["value"] for c in sel],
                [c["attention_mean"]["lift"] for c in sel],
                label=arm,
                s=18,
            )
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("test AUROC (fine-tuned model)")
        ax.set_ylabel("lung lift (1 = chance)")
        ax.legend(fontsize=7)
        path = folder / "lung_lift_vs_auroc.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
