"""Multi-label evaluation: per-finding AUROC against scikit-learn, intervals, paired tests,
masked BCE, one logistic regression per finding, multi-label kNN, and the three protocols
on the real NIH ChestX-ray14 subset with its real multi-label rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cxr_curriculum.evaluation import (
    EvalResult,
    FrozenFeatures,
    fine_tune,
    fit_multilabel_logistic_regression,
    knn_evaluate,
    knn_predict_multilabel,
    linear_probe,
    masked_bce,
    multilabel_auroc,
    multilabel_auroc_ci,
    paired_multilabel_auroc_test,
    targets_of,
    train_subset,
)
from cxr_curriculum.stats import PairedComparison, bootstrap_indices

pytestmark = pytest.mark.usefixtures("one_thread")
sk = pytest.importorskip("sklearn.metrics")


def _multilabel(n: int, c: int, seed: int, unknown: float = 0.2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(n, c, generator=g) < 0.3).double()
    t[:2] = torch.tensor([0.0, 1.0]).repeat(c, 1).T  # both classes in every column
    s = t * 0.8 + torch.randn(n, c, generator=g, dtype=torch.float64)
    hide = torch.rand(n, c, generator=g) < unknown
    hide[:2] = False
    return s, t.masked_fill(hide, float("nan"))


def test_per_finding_auroc_matches_sklearn_on_known_labels() -> None:
    s, t = _multilabel(80, 5, seed=0)
    names = ["a", "b", "c", "d", "e"]
    res = multilabel_auroc(s, t, names)
    for j, name in enumerate(names):
        known = ~torch.isnan(t[:, j])
        ref = sk.roc_auc_score(t[known, j].numpy(), s[known, j].numpy())
        assert res.per_finding[name] == pytest.approx(ref, abs=1e-12)
    assert res.macro == pytest.approx(np.mean(list(res.per_finding.values())))
    full = ~torch.isnan(t).any(1)  # rows with every label known: average=None directly
    ref_all = sk.roc_auc_score(t[full].numpy(), s[full].numpy(), average=None)
    np.testing.assert_allclose(
        list(multilabel_auroc(s[full], t[full], names).per_finding.values()), ref_all
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_per_finding_auroc_property(data: st.DataObject) -> None:
    n = data.draw(st.integers(4, 30))
    c = data.draw(st.integers(1, 4))
    cell = st.sampled_from([0.0, 1.0, float("nan")])
    t = torch.tensor(
        data.draw(st.lists(st.lists(cell, min_size=c, max_size=c), min_size=n, max_size=n))
    )
    s = torch.tensor(
        data.draw(
            st.lists(st.lists(st.integers(0, 5), min_size=c, max_size=c), min_size=n, max_size=n)
        ),
        dtype=torch.float64,
    )  # integer scores: many ties
    n_pos, n_neg = (t == 1).sum(0), (t == 0).sum(0)
    if not ((n_pos >= 1) & (n_neg >= 1)).any():
        with pytest.raises(ValueError, match="no finding has"):
            multilabel_auroc(s, t)
        return
    res = multilabel_auroc(s, t)
    for j in range(c):
        name = str(j)
        if n_pos[j] < 1 or n_neg[j] < 1:
            assert name in res.left_out and name not in res.per_finding
            continue
        known = ~torch.isnan(t[:, j])
        ref = sk.roc_auc_score(t[known, j].numpy(), s[known, j].numpy())
        assert res.per_finding[name] == pytest.approx(ref, abs=1e-12)
        # Unknown labels are ignored, never counted as negatives.
        assert res.n_positive[name] + res.n_negative[name] == int(known.sum())


def test_too_few_positives_are_left_out_and_named() -> None:
    s, t = _multilabel(60, 3, seed=1, unknown=0.0)
    t[:, 2] = 0.0
    t[:3, 2] = 1.0  # three positives
    res = multilabel_auroc(s, t, ["x", "y", "rare"], min_positives=5)
    assert res.left_out == ("rare",) and set(res.per_finding) == {"x", "y"}
    assert res.n_positive["rare"] == 3
    with pytest.raises(ValueError, match="names for"):
        multilabel_auroc(s, t, ["x"])
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        multilabel_auroc(s, t * 2)


def _sk_auroc(y: np.ndarray, x: np.ndarray) -> float:
    known = ~np.isnan(y)
    if len(set(y[known])) < 2:
        return float("nan")
    return float(sk.roc_auc_score(y[known], x[known]))


def test_intervals_equal_sklearn_on_the_same_patient_resamples() -> None:
    s, t = _multilabel(90, 3, seed=2)
    groups = [f"p{i // 3}" for i in range(90)]
    ci = multilabel_auroc_ci(s, t, groups=groups, n_resamples=150, seed=4)
    gen = torch.Generator().manual_seed(4)
    reps = np.array(
        [
            [_sk_auroc(t[i, j].numpy(), s[i, j].numpy()) for j in range(3)]
            for i in bootstrap_indices(90, 150, gen, groups)
        ]
    )
    macro = np.where(np.isnan(reps).any(1), np.nan, reps.mean(1))
    for j in range(3):
        valid = reps[~np.isnan(reps[:, j]), j]
        assert ci.per_finding[str(j)].n_valid == len(valid)
        ref = np.percentile(valid, [2.5, 97.5])
        assert (ci.per_finding[str(j)].low, ci.per_finding[str(j)].high) == pytest.approx(
            tuple(ref), abs=1e-12
        )
    ref = np.percentile(macro[~np.isnan(macro)], [2.5, 97.5])
    assert (ci.macro.low, ci.macro.high) == pytest.approx(tuple(ref), abs=1e-12)
    assert ci.macro.estimate == pytest.approx(multilabel_auroc(s, t).macro)
    assert ci.macro.n_clusters == 30 and ci.macro.n == 90


def test_paired_per_finding_comparison() -> None:
    s, t = _multilabel(90, 3, seed=3)
    noise = s + torch.randn(
        s.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    cmp = paired_multilabel_auroc_test(s, noise, t, n_resamples=200)
    assert isinstance(cmp.macro, PairedComparison) and cmp.macro.metric == "macro_auroc"
    assert cmp.macro.difference > 0 and cmp.macro.low <= cmp.macro.difference <= cmp.macro.high
    swapped = paired_multilabel_auroc_test(noise, s, t, n_resamples=200)
    for name, c in cmp.per_finding.items():
        assert c.metric == f"auroc[{name}]"
        assert swapped.per_finding[name].difference == pytest.approx(-c.difference)
        assert swapped.per_finding[name].p_value == c.p_value
    same = paired_multilabel_auroc_test(s, s, t, n_resamples=50)
    assert same.macro.p_value == 1.0 and same.macro.difference == 0.0


def test_masked_bce_ignores_unknown_labels() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    targets = torch.tensor([[1.0, float("nan"), 0.0]] * 4)
    loss = masked_bce(logits, targets)
    known = ~torch.isnan(targets)
    ref = F.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[:, 1] == 0)


def test_one_logistic_regression_per_finding_matches_sklearn() -> None:
    lm = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 4, generator=g, dtype=torch.float64)
    t = torch.stack([(x[:, 0] + 0.5 * torch.randn(120, generator=g) > 0), x[:, 1] > 0.3], 1)
    t = t.double()
    t[::5, 1] = float("nan")
    l2 = 0.05
    head, losses = fit_multilabel_logistic_regression(x, t, l2=l2)
    for j in range(2):
        known = ~torch.isnan(t[:, j])
        ref = lm.LogisticRegression(C=1.0 / (l2 * int(known.sum())), tol=1e-10, max_iter=5000)
        ref.fit(x[known].numpy(), t[known, j].numpy())
        np.testing.assert_allclose(head.weight[j].detach().numpy(), ref.coef_[0], atol=1e-4)
        assert head.bias[j].item() == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert all(np.isfinite(losses))
    t[:, 1] = 0.0  # one class only: a constant (prevalence) score, NaN loss
    head, losses = fit_multilabel_logistic_regression(x, t, l2=l2)
    assert np.isnan(losses[1]) and torch.all(head.weight[1] == 0)


def test_multilabel_knn_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(30, 6, generator=g), torch.randn(5, 6, generator=g)
    t = (torch.rand(30, 3, generator=g) < 0.4).float()
    t[::4, 2] = float("nan")
    out = knn_predict_multilabel(train, t, test, k=7, temperature=0.1)
    sim = F.normalize(test, dim=1) @ F.normalize(train, dim=1).T
    for i in range(5):
        top = sim[i].topk(7)
        w = torch.exp(top.values / 0.1)
        for j in range(3):
            y = t[top.indices, j]
            known = ~torch.isnan(y)
            ref = (w[known] * y[known]).sum() / w[known].sum()
            assert out[i, j].item() == pytest.approx(ref.item(), rel=1e-5)


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def nih_small(data_root: Path) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset]:
    """About 60 + 30 real NIH images with their real multi-label rows, split by patient."""
    from cxr_curriculum.data import NIHChestXray14, patient_split

    ds = NIHChestXray14(
        data_root / "nih-chestxray14-subset",
        csv_file=data_root / "label-tables" / "Data_Entry_2017_v2020.csv.gz",
    )
    assert ds.targets is not None and ds.targets.shape == (1000, 14)
    small, _ = patient_split(ds, (0.09, 0.91), seed=0)
    train, test = patient_split(small, (0.67, 0.33), seed=0)
    return train, test


@pytest.mark.realdata
@pytest.mark.slow
def test_protocols_on_real_nih_multilabel_rows(nih_small: tuple) -> None:
    from cxr_curriculum.backbones import Backbone
    from cxr_curriculum.data import dataset_patient_ids

    train, test = nih_small
    targets = targets_of(test)
    assert targets is not None and targets.shape == (len(test), 14)
    assert not set(dataset_patient_ids(train)) & set(dataset_patient_ids(test))
    half = train_subset(train, 0.5, seed=0)  # whole patients at a label fraction
    ids = dataset_patient_ids(half)
    assert 0 < len(half) < len(train)
    assert {p: ids.count(p) for p in ids} == {
        p: dataset_patient_ids(train).count(p) for p in set(ids)
    }
    torch.manual_seed(0)
    backbone = Backbone("resnet18", in_chans=1)
    feats = FrozenFeatures.compute(backbone, train, test, image_size=32)
    assert feats.train_y.shape == (len(train), 14)
    results: list[EvalResult] = [
        knn_evaluate(backbone, train, test, image_size=32, k=5, features=feats),
        linear_probe(backbone, train, test, image_size=32, max_iter=30, features=feats),
        fine_tune(backbone, train, test, image_size=32, steps=2, batch_size=16, fraction=0.5),
    ]
    for res in results:
        assert res.multilabel and res.scores.shape == (len(test), 14)
        assert torch.equal(res.labels, targets) and res.classes is not None
        assert res.classes[1] == "Cardiomegaly"
        assert ((res.scores >= 0) & (res.scores <= 1)).all()
        m = res.metrics()
        ref = multilabel_auroc(res.scores, targets, res.classes)
        assert m["auroc"] == ref.macro and "auroc/Pneumonia" in m
    assert results[2].n_train == len(half)
    assert isinstance(results[2].model, nn.Module)
    ci = results[1].confidence_interval("auroc/Pneumonia", n_resamples=50)
    assert ci.low <= ci.estimate <= ci.high and ci.n_clusters == len(set(dataset_patient_ids(test)))


class _VectorLabels(torch.utils.data.Dataset):
    """Items with (3,) target vectors but no ``.targets``: a wrapper that hides them."""

    def __init__(self) -> None:
        self.labels = [0, 1] * 4
        self.patient_ids = [f"p{i}" for i in range(8)]

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(1, 16, 16), torch.tensor([1.0, 0.0, float(i % 2)])


def test_fine_tune_names_a_multilabel_dataset_without_targets() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match=r"must expose \.targets"):
        fine_tune(net, _VectorLabels(), _VectorLabels(), image_size=16, steps=1, batch_size=4)
    # The frozen protocols read the label shape: (N, 3) targets make them multi-label.
    res = linear_probe(net, _VectorLabels(), _VectorLabels(), image_size=16, max_iter=5)
    assert res.multilabel and res.scores.shape == (8, 3)
