"""Multi-label findings on the real NIH ChestX-ray14 subset: per-finding AUROC with CIs.

The 1,000 images of ``nih-chestxray14-subset`` with their real rows of the 2020 label
table (``label-tables/Data_Entry_2017_v2020.csv.gz``; 14 findings per image), split by
patient (70/30, stratified by "any finding"). A ResNet-18 (random, seeded, or a backbone
file) is evaluated with the three multi-label protocols: a kNN on frozen features, one
logistic regression per finding on frozen features, and fine-tuning with masked BCE.
For each, the AUROC of every finding with at least ``--min-positives`` positive and
negative test images, their macro mean, and patient-clustered bootstrap 95 % CIs; the
fine-tuned model is compared with the linear probe finding by finding (paired patient
bootstrap); and the fine-tuned model's Grad-CAM lung attention for one finding is scored
with the bundled lung segmenter.

Usage::

    python benchmarks/bench_multilabel_nih.py                    # a few minutes on a CPU
    python benchmarks/bench_multilabel_nih.py --backbone runs/cur1/backbone.safetensors
    python benchmarks/bench_multilabel_nih.py --smoke            # seconds, used by tests

Wang et al., "ChestX-ray8", CVPR 2017 (labels mined from reports by NLP: noisy).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from cxr_curriculum import Backbone, LungAttentionScorer
from cxr_curriculum.data import (
    NIH_FINDINGS,
    LabeledImage,
    NIHChestXray14,
    data_root,
    dataset_patient_ids,
    patient_split,
)
from cxr_curriculum.evaluation import (
    EvalResult,
    FrozenFeatures,
    fine_tune,
    knn_evaluate,
    linear_probe,
    multilabel_auroc_ci,
    paired_multilabel_auroc_test,
    resize_collate,
    targets_of,
)

TABLE = "label-tables/Data_Entry_2017_v2020.csv.gz"


class InMemory(Dataset[LabeledImage]):
    """A dataset's images decoded once and resized to a square, held in memory.

    Keeps the fields the protocols read without images (``targets``, ``labels``,
    ``patient_ids``, ``classes``), so fine-tuning does not decode PNGs at every step.
    """

    def __init__(self, dataset: Dataset[Any], image_size: int, classes: list[str]) -> None:
        loader = DataLoader(dataset, batch_size=64, collate_fn=resize_collate(image_size))
        images, targets = zip(*loader, strict=True)
        self.images: Tensor = torch.cat(images)
        self.targets: Tensor = torch.cat(targets)
        self.labels = [int(t.nansum() > 0) for t in self.targets]  # any finding
        self.patient_ids = dataset_patient_ids(dataset)
        self.classes = classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> LabeledImage:
        return LabeledImage(self.images[i], self.targets[i], self.patient_ids[i])


def _rows(protocol: str, res: EvalResult, args: argparse.Namespace) -> list[dict[str, Any]]:
    ci = multilabel_auroc_ci(
        res.scores, res.labels, res.classes, groups=res.patient_ids,
        min_positives=args.min_positives, min_negatives=args.min_positives,
        n_resamples=args.n_resamples, seed=args.seed,
    )  # fmt: skip
    targets = res.labels
    rows = []
    for name, c in [*ci.per_finding.items(), ("macro", ci.macro)]:
        j = NIH_FINDINGS.index(name) if name != "macro" else None
        rows.append(
            {
                "protocol": protocol,
                "finding": name,
                "auroc": round(c.estimate, 4),
                "ci_95": [round(c.low, 4), round(c.high, 4)],
                "test_positives": int((targets[:, j] == 1).sum()) if j is not None else None,
                "n_valid": c.n_valid,
            }
        )
    return rows


def _attention(model: Any, test: Any, args: argparse.Namespace) -> dict[str, Any]:
    scorer = LungAttentionScorer(
        method="gradcam", target_layer=model.backbone.fine_target_layer, n_boot=args.n_resamples
    )
    report = scorer.score_dataset(
        model.eval(), test, n=args.attention_images, image_size=args.image_size,
        seed=args.seed, targets=args.attention_finding, class_names=list(NIH_FINDINGS),
    )  # fmt: skip
    out: dict[str, Any] = {"finding": args.attention_finding, "n_images": len(report)}
    for metric in ("energy_in_mask", "lift", "area_fraction"):
        ci = report.aggregate[metric]
        out[metric] = round(ci.estimate, 4)
        out[f"{metric}_ci_95"] = [round(ci.low, 4), round(ci.high, 4)]
    out["summary"] = report.summary()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=200, help="fine-tuning optimiser steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--probe-iters", type=int, default=500, help="L-BFGS iterations of the probe")
    p.add_argument("--backbone", type=Path, default=None, help="a saved backbone file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-positives", type=int, default=10, help="per finding, test split")
    p.add_argument("--n-resamples", type=int, default=1000)
    p.add_argument("--attention-finding", default="Pneumonia")
    p.add_argument("--attention-images", type=int, default=32)
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--smoke", action="store_true", help="tiny run for the tests")
    args = p.parse_args(argv)
    if args.smoke:
        args.limit, args.steps, args.n_resamples = args.limit or 160, 2, 100
        args.min_positives, args.attention_images, args.probe_iters = 3, 4, 30
    torch.manual_seed(args.seed)
    root = data_root()
    t0 = time.perf_counter()
    nih = NIHChestXray14(root / "nih-chestxray14-subset", csv_file=root / TABLE)
    ds: Any = nih if args.limit is None else Subset(nih, range(args.limit))
    train_raw, test_raw = patient_split(ds, (0.7, 0.3), seed=args.seed)
    classes = list(NIH_FINDINGS)
    train = InMemory(train_raw, args.image_size, classes)
    test = InMemory(test_raw, args.image_size, classes)
    load_s = time.perf_counter() - t0
    if args.backbone is not None:
        backbone = Backbone.from_file(args.backbone)
    else:
        backbone = Backbone("resnet18", in_chans=1, seed=args.seed)
    kw = {"image_size": args.image_size, "seed": args.seed}
    t0 = time.perf_counter()
    feats = FrozenFeatures.compute(backbone, train, test, image_size=args.image_size)
    results = {
        "knn": knn_evaluate(backbone, train, test, k=20, features=feats, **kw),
        "linear_probe": linear_probe(
            backbone, train, test, features=feats, max_iter=args.probe_iters, **kw
        ),
    }
    frozen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    results["fine_tune"] = fine_tune(
        backbone, train, test, steps=args.steps, batch_size=args.batch_size, lr=args.lr, **kw
    )
    tune_s = time.perf_counter() - t0
    rows = [row for name, res in results.items() for row in _rows(name, res, args)]
    cmp = paired_multilabel_auroc_test(
        results["fine_tune"].scores, results["linear_probe"].scores, results["fine_tune"].labels,
        classes, groups=results["fine_tune"].patient_ids, min_positives=args.min_positives,
        min_negatives=args.min_positives, n_resamples=args.n_resamples, seed=args.seed,
    )  # fmt: skip
    comparisons = {k: v.to_dict() for k, v in [*cmp.per_finding.items(), ("macro", cmp.macro)]}
    t0 = time.perf_counter()
    attention = _attention(results["fine_tune"].model, test_raw, args)
    attention_s = time.perf_counter() - t0
    test_targets = targets_of(test)
    assert test_targets is not None
    record = {
        "rows": rows,
        "fine_tune_minus_linear_probe": comparisons,
        "left_out": list(cmp.left_out),
        "attention": attention,
        "n_train": len(train),
        "n_test": len(test),
        "test_patients": len(set(test.patient_ids)),
        "test_positives": dict(
            zip(classes, (test_targets == 1).sum(0).int().tolist(), strict=True)
        ),
        "fine_tune_loss": list(results["fine_tune"].train_loss),
        "seconds": {
            "load": round(load_s, 1),
            "frozen_protocols": round(frozen_s, 1),
            "fine_tune": round(tune_s, 1),
            "attention": round(attention_s, 1),
        },
    }
    name = "multilabel_nih_smoke" if args.smoke else "multilabel_nih"
    write_results(
        name,
        record,
        config={**vars(args), "backbone": str(args.backbone) if args.backbone else "random"},
        markdown=_markdown(record),
        title="Multi-label NIH ChestX-ray14 subset: per-finding AUROC",
    )
    print(_markdown(record))


def _markdown(record: dict[str, Any]) -> str:
    lines = [
        f"{record['n_train']} training and {record['n_test']} test images "
        f"({record['test_patients']} test patients); findings with too few test positives "
        f"left out: {', '.join(record['left_out']) or 'none'}.",
        "",
        "| protocol | finding | test positives | AUROC | 95 % CI (patient bootstrap) |",
        "|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        pos = "" if r["test_positives"] is None else str(r["test_positives"])
        lo, hi = r["ci_95"]
        lines.append(
            f"| {r['protocol']} | {r['finding']} | {pos} | {r['auroc']:.3f} | {lo:.3f}-{hi:.3f} |"
        )
    m = record["fine_tune_minus_linear_probe"]["macro"]
    a = record["attention"]
    lines += [
        "",
        f"Fine-tune minus linear probe, macro AUROC: {m['difference']:+.3f} "
        f"(95 % CI {m['low']:+.3f} to {m['high']:+.3f}, p = {m['p_value']:.3g}).",
        "",
        f"Lung attention of the fine-tuned model for {a['finding']} (Grad-CAM, "
        f"{a['n_images']} test images): energy in the lungs {a['energy_in_mask']:.3f} "
        f"[{a['energy_in_mask_ci_95'][0]:.3f}, {a['energy_in_mask_ci_95'][1]:.3f}], "
        f"lift {a['lift']:.3f} [{a['lift_ci_95'][0]:.3f}, {a['lift_ci_95'][1]:.3f}].",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
