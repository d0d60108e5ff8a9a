"""Lung attention for a chosen finding of a multi-label model (issue 11), on real NIH images.

A multi-label (sigmoid) model has one logit per finding; the scorer explains the logit of
the finding asked for, by index or by name (``targets="Pneumonia"`` with
``class_names=NIH_FINDINGS``). Checked against pytorch-grad-cam's
``ClassifierOutputTarget`` on the same layer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _attention import SmallNet, corr
from cxr_curriculum.attention import LungAttentionScorer
from cxr_curriculum.data import NIH_FINDINGS, NIHChestXray14

pytestmark = pytest.mark.usefixtures("one_thread")

PNEUMONIA = NIH_FINDINGS.index("Pneumonia")
EFFUSION = NIH_FINDINGS.index("Effusion")


@pytest.mark.realdata
def test_scorer_explains_a_chosen_finding_of_a_multilabel_model(data_root: Path) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    nih = NIHChestXray14(data_root / "nih-chestxray14-subset")  # No_findings / Pneumonia
    torch.manual_seed(0)
    model = SmallNet(len(NIH_FINDINGS)).eval()  # one logit per finding
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=100)
    report = scorer.score_dataset(
        model, nih, n=6, image_size=64, targets="Pneumonia", class_names=NIH_FINDINGS
    )
    assert report.meta["target"] == f"output {PNEUMONIA} (Pneumonia)"
    assert report.images is not None and report.saliency is not None and report.masks is not None
    images = report.images
    # A name and its index explain the same output.
    by_index = scorer.score(model, images, targets=PNEUMONIA, masks=report.masks)
    assert by_index.saliency is not None and torch.equal(by_index.saliency, report.saliency)
    # The map is Grad-CAM of the Pneumonia logit, as pytorch-grad-cam computes it.
    with pgc.GradCAM(model, [model.features[2]]) as cam:
        ref = torch.from_numpy(cam(images, [ClassifierOutputTarget(PNEUMONIA)] * len(images)))
    checked = 0
    for ours, theirs in zip(report.saliency, ref, strict=True):
        if ours.max() > 0 and theirs.std() > 0:
            assert corr(ours, theirs) > 0.99
            checked += 1
    assert checked >= 3
    # Another finding is another explanation.
    effusion = scorer.saliency(model, images, EFFUSION)
    assert not torch.allclose(effusion, report.saliency)
    # One name per image.
    mixed = scorer.score(
        model,
        images[:2],
        targets=["Pneumonia", "Effusion"],
        class_names=NIH_FINDINGS,
        masks=report.masks[:2],
    )
    assert mixed.saliency is not None
    assert torch.allclose(mixed.saliency[0], report.saliency[0])
    assert torch.allclose(mixed.saliency[1], effusion[1])


def test_named_targets_are_checked() -> None:
    model = SmallNet(len(NIH_FINDINGS)).eval()  # one logit per finding
    scorer = LungAttentionScorer(method="gradients", n_boot=20)
    images, masks = torch.rand(2, 1, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['pneumonia'\].*Atelectasis"):
        scorer.score(model, images, targets="pneumonia", class_names=NIH_FINDINGS, masks=masks)
    with pytest.raises(ValueError, match="pass class_names="):
        scorer.score(model, images, targets="Pneumonia", masks=masks)
    with pytest.raises(ValueError, match="14 outputs but the class names list 2"):
        scorer.score(
            model, images, targets="Pneumonia", class_names=["No Finding", "Pneumonia"], masks=masks
        )
