"""Render attention results as the markdown of docs/attention.md.

``bench_attention.py experiment`` writes ``attention_experiment.json``; this prints, per
task, the headline (accuracy, AUROC, training time, mask source), the table of scores
with 95% CIs, the paired comparisons of lift and the cascading-randomisation sanity
checks. With ``faithfulness`` it renders a study's ``results.json`` (a study run with
``[evaluation] faithfulness``, e.g. ``benchmarks/configs/study_kermany_faithfulness_cpu.toml``)
as the per-arm table of AUROC, lung attention, faithfulness and the lung-restricted
effect, each with its two-level 95% CI over seeds and test patients. The docs are pasted
from the measurement rather than typed.

Usage::

    python benchmarks/attention_report.py [benchmarks/results/attention_experiment.json]
    python benchmarks/attention_report.py faithfulness STUDY/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TITLES = {
    "confounded": "Confounded (COVID-19 vs NIH No_findings)",
    "kermany": "Kermany pneumonia",
}
METRICS = ("energy_in_mask", "lift", "pointing_game", "rank_accuracy")


def _get(entry: dict[str, Any], name: str) -> Any:
    """A field by its name in ``cxr_curriculum.stats`` or, in records written before the
    statistics were unified (0.x), by its old name (``mean``, ``diff``)."""
    old = {"estimate": "mean", "difference": "diff"}
    return entry[name] if name in entry else entry[old[name]]


def _ci(stat: dict[str, float]) -> str:
    return f"{_get(stat, 'estimate'):.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def _scores_table(scores: dict[str, Any]) -> list[str]:
    lines = [
        "| map | images | energy in lungs | lift | pointing game | rank accuracy "
        "| lung area fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, entry in scores.items():
        method, images = key.split("/", 1)
        agg = entry["aggregate"]
        n, clusters = agg["lift"]["n"], agg["lift"]["n_clusters"]
        cells = [_ci(agg[m]) for m in METRICS]
        area = f"{_get(agg['area_fraction'], 'estimate'):.3f}"
        lines.append(
            f"| {method} | {images} (n={n}, {clusters} patients) | "
            + " | ".join(cells)
            + f" | {area} |"
        )
    return lines


def _compare_lines(compare: dict[str, Any]) -> list[str]:
    lines = []
    for key, c in compare.items():
        if not key.endswith("/lift"):
            continue
        lines.append(
            f"- {key.removesuffix('/lift')}: {_get(c, 'difference'):+.3f} "
            f"[{c['low']:+.3f}, {c['high']:+.3f}], p = {c['p_value']:.2g}"
        )
    return lines


def _compare_header(compare: dict[str, Any]) -> str:
    first = next(iter(compare.values()), {})
    if "diff" in first:  # recorded before the unified p-value: (1 + #) / (1 + n_boot)
        rule = "p-value from the paired patient bootstrap; 1/2001 is the smallest possible"
    else:
        n = first.get("n_resamples", 0)
        rule = (
            "p-value from the paired patient bootstrap, twice the smaller tail mass at 0 "
            f"with the add-one correction; 2/{n + 1} is the smallest possible"
        )
    return f"Paired comparisons on the same images (`scorer.compare`, difference in lift, {rule}):"


def _sanity_line(method: str, check: dict[str, Any]) -> str:
    rows = check["rows"]
    parts = []
    for r in rows:
        if r["n_randomised"] == 0:
            name = "trained"
        elif r["n_randomised"] == 1:
            name = f"{r['layer']} (the linear head)"
        else:
            name = f"{r['layer']} ({r['n_randomised']} layers randomised)"
        parts.append(f"{name}: rho {r['spearman']:.2f}, energy {r['energy_in_mask']:.3f}")
    n_points = len(rows) - 1
    n_images = f"{check['n_images']} " if "n_images" in check else ""
    return (
        f"Sanity check, {method} ({n_points} cascade points, {n_images}images from "
        f"`{check['images']}`): " + "; ".join(parts)
    )


def render(record: dict[str, Any]) -> str:
    """Markdown for every task in ``record`` (the experiment JSON)."""
    out: list[str] = []
    for task, title in TITLES.items():
        if task not in record:
            continue
        t = record[task]
        out.append(
            f"**{title}**: test accuracy {t['test_accuracy']:.3f}, AUROC "
            f"{t['test_auroc']:.3f} ({t['n_test']} test images); training "
            f"{t['train_s'] / 60:.0f} min wall on the shared CPU. Masks: {t['mask_source']}."
        )
        out += ["", *_scores_table(t["scores"]), ""]
        out.append(_compare_header(t["compare"]))
        out += ["", *_compare_lines(t["compare"]), ""]
        for method, check in t["sanity_check"].items():
            out += [_sanity_line(method, check), ""]
    return "\n".join(out)


#: Columns of the per-arm faithfulness table: key in a results.json attention row, header.
FAITHFULNESS = {
    "lift": "lift",
    "energy_in_mask": "energy in lungs",
    "deletion": "deletion (lower better)",
    "insertion": "insertion",
    "road": "ROAD",
    "lung_drop": "lung drop",
    "outside_drop": "outside drop",
    "lung_effect": "lung effect",
}


def render_faithfulness(results: dict[str, Any]) -> str:
    """The per-arm table of a study's ``results.json`` with faithfulness columns."""
    rows = results["attention"]
    if not rows or not any("lung_effect" in r or "deletion" in r for r in rows):
        raise ValueError(
            "the study recorded no faithfulness columns: run it with [evaluation] "
            "faithfulness = [...]"
        )
    auroc = {
        (r["task"], r["fraction"], r["arm"]): r
        for r in results["arm_metrics"]
        if r["protocol"] == "fine_tune"
    }
    cols = [k for k in FAITHFULNESS if any(k in r for r in rows)]
    design = results["design"]
    lines = [
        f"{len(design['seeds'])} seeds ({design['seeds']}), "
        f"{design['cells_done']} of {design['cells_total']} cells; mean over seeds with "
        "the two-level 95% CI (seeds, then test patients).",
        "",
        "| task | labels | arm | AUROC | " + " | ".join(FAITHFULNESS[k] for k in cols) + " |",
        "|---|---|---|---|" + "---|" * len(cols),
    ]
    for r in rows:
        metric = auroc.get((r["task"], r["fraction"], r["arm"]))
        head = _ci(metric) if metric else "-"
        cells = [_ci(r[k]) if k in r else "-" for k in cols]
        lines.append(
            f"| {r['task']} | {r['fraction']:g} | {r['arm']} | {head} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "faithfulness":
        if len(args) != 2:
            raise SystemExit("usage: attention_report.py faithfulness STUDY/results.json")
        print(render_faithfulness(json.loads(Path(args[1]).read_text())))
        return
    path = Path(args[0] if args else "benchmarks/results/attention_experiment.json")
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
