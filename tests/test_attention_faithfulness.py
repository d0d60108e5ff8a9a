"""Faithfulness (issue 21, items 2 and 3): deletion, insertion, ROAD against
pytorch-grad-cam's, and the lung-restricted effect, on real films with V7 lung masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from _attention import SmallNet, covid_films
from cxr_curriculum.attention import (
    FAITHFULNESS_COLUMNS,
    Gradients,
    LungAttentionScorer,
    PerturbationSettings,
    faithfulness_metrics,
    noisy_linear_impute,
)
from cxr_curriculum.attention.faithfulness import road
from cxr_curriculum.attention.perturbation import (
    ExplainedProbability,
    curve_area,
    image_generator,
)
from cxr_curriculum.attention.targets import BinaryLogitTarget, ClassTarget

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 48
ALL = ("deletion", "insertion", "road", "lungs")


class RegionModel(nn.Module):
    """Logits ``(-z, z)``, ``z = 8 (mean of x over a fixed region - 0.2)``: it sees only
    the region, so removing (blacking out) its pixels lowers class 1 and nothing else does."""

    def __init__(self, region: torch.Tensor, gain: float = 8.0, centre: float = 0.2) -> None:
        super().__init__()
        self.register_buffer("w", region.float() / region.float().sum())
        self.gain, self.centre = gain, centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.gain * ((x[:, 0] * self.w).sum((-2, -1)) - self.centre)
        return torch.stack([-z, z], 1)


@pytest.fixture(scope="module")
def covid(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Four real covid-chestxray films at 48 px and their V7 lung masks (bool)."""
    x, m, _ = covid_films(data_root, 4, SIZE)
    return x.clamp(0, 1), m == 1


@pytest.mark.realdata
# pytorch-grad-cam's ROAD calls np.argwhere on a tensor (numpy 2 deprecation, theirs)
@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_road_equals_pytorch_grad_cams_on_real_films(covid: tuple) -> None:
    pytest.importorskip("pytorch_grad_cam", reason="needs the 'saliency' extra")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x, masks = covid[0][:3], covid[1]
    torch.manual_seed(0)
    region = masks[0]  # the model responds to imputing the lung pixels of film 0
    centre = float((x[:, 0] * region).sum((1, 2)).mean() / region.sum())
    model = RegionModel(region, gain=40.0, centre=centre).eval()
    classes = [1, 0, 1]
    maps = Gradients(SmallNet().eval())(x, classes)  # an order of the pixels
    maps = maps + 1e-3 * maps.amax() * torch.rand(maps.shape)  # break the ties of dead units
    maps = maps / maps.flatten(1).amax(1)[:, None, None]  # pytorch-grad-cam wants [0, 1]
    assert all(torch.unique(m).numel() == m.numel() for m in maps)  # no ties: one order
    with torch.no_grad():
        outputs = model(x)
    score = ExplainedProbability(ClassTarget(classes), outputs)
    clean = score(outputs, torch.arange(3))
    pct = (10, 30, 50, 70, 90)
    ours = road(model, x, maps.flatten(1), score, clean,
                PerturbationSettings(road_percentiles=pct, road_noise=0.0), 4)  # fmt: skip
    targets = [ClassifierOutputSoftmaxTarget(k) for k in classes]
    cams = maps.numpy()

    def average(remove: type) -> np.ndarray:
        runs = [PerturbationConfidenceMetric(remove(p, NoisyLinearImputer(noise=0.0)))(
            x, cams, targets, model) for p in pct]  # fmt: skip
        return np.mean(np.float32(runs), axis=0)

    morf, lerf = average(RemoveMostRelevantFirst), average(RemoveLeastRelevantFirst)
    np.testing.assert_allclose(ours["road_morf"].numpy(), morf, atol=2e-6)
    np.testing.assert_allclose(ours["road_lerf"].numpy(), lerf, atol=2e-6)
    np.testing.assert_allclose(ours["road"].numpy(), (lerf - morf) / 2, atol=2e-6)
    assert float(np.abs(morf).max()) > 1e-3  # the comparison is not of zeros
    # The noise is the reference's default (drawn from a seeded generator here).
    assert NoisyLinearImputer().noise == PerturbationSettings().road_noise


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # theirs, as above
def test_noisy_linear_imputation_equals_the_reference_on_a_real_film(covid: tuple) -> None:
    pytest.importorskip("pytorch_grad_cam", reason="needs the 'saliency' extra")
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    image = covid[0][0]
    remove = torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(0)) < 0.6
    ours = noisy_linear_impute(image, remove, noise=0.0)
    reference = NoisyLinearImputer(noise=0.0)(image, (~remove).float())
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    assert torch.equal(ours[:, ~remove], image[:, ~remove])
    everything = noisy_linear_impute(image, torch.ones(SIZE, SIZE, dtype=torch.bool), 0.0)
    torch.testing.assert_close(everything, torch.full_like(image, float(image.mean())))


@pytest.mark.realdata
def test_a_faithful_map_beats_its_reverse_on_real_films(covid: tuple) -> None:
    x, masks = covid
    lungs = masks[:1].expand_as(masks)  # one film's V7 lungs: the region the model sees
    model = RegionModel(lungs[0]).eval()
    scorer = LungAttentionScorer(
        n_boot=200, faithfulness=ALL,
        perturbation=PerturbationSettings(steps=8, baseline="zero", road_percentiles=(20, 50, 80)),
    )  # fmt: skip
    pids = ["p1", "p2", "p3", "p4"]
    good = scorer.score(model, x, targets=1, masks=lungs, saliency=lungs + 0.0, patient_ids=pids)
    bad = scorer.score(model, x, targets=1, masks=lungs, saliency=~lungs + 0.0, patient_ids=pids)
    for g, b in zip(good.rows, bad.rows, strict=True):
        assert g["deletion"] < b["deletion"] and g["insertion"] > b["insertion"]
    cmp = scorer.compare(good, bad, "deletion")
    assert cmp.difference < 0 and cmp.metric == "deletion"
    # Curves start at the clean image (deletion) and at the baseline (insertion).
    with torch.no_grad():
        prob = model(x).softmax(1)[:, 1].double()
        black = model(torch.zeros_like(x)).softmax(1)[:, 1].double()
    curves = good.curves
    torch.testing.assert_close(curves["deletion"][:, 0], prob)
    torch.testing.assert_close(curves["deletion"][:, -1], black)
    torch.testing.assert_close(curves["insertion"][:, 0], black)
    torch.testing.assert_close(curves["insertion"][:, -1], prob)
    assert curves["deletion"].shape == (4, 9)


@pytest.mark.realdata
def test_the_lung_effect_tells_a_lung_model_from_an_outside_model(covid: tuple) -> None:
    x, masks = covid
    lungs = masks[1:2].expand_as(masks)  # one film's V7 lungs for all four films
    settings_ = PerturbationSettings(steps=8, baseline="zero")
    scorer = LungAttentionScorer(method="gradients", n_boot=200, faithfulness=("lungs",),
                                 perturbation=settings_)  # fmt: skip
    inside = scorer.score(RegionModel(lungs[0]).eval(), x, targets=1, masks=lungs)
    outside = scorer.score(RegionModel(~lungs[0]).eval(), x, targets=1, masks=lungs)
    for row in inside.rows:
        assert row["lung_drop"] > 0.01 and row["outside_drop"] == pytest.approx(0, abs=1e-9)
        assert row["lung_effect"] > 0.01 and row["lung_effect_salient"] > 0.01
        assert row["lung_drop_whole"] > row["lung_drop"]  # the whole region, not matched
    for row in outside.rows:
        assert row["lung_effect"] < -0.01 and row["lung_drop"] == pytest.approx(0, abs=1e-9)
    assert set(FAITHFULNESS_COLUMNS["lungs"]) <= set(inside.rows[0])
    assert not {"deletion", "road"} & set(inside.rows[0])  # only what was asked for
    cmp = scorer.compare(inside, outside, "lung_effect")
    assert cmp.difference > 0.02 and cmp.low > 0
    text = inside.summary()
    assert (
        "faithfulness (softmax probability of the explained class; 8 steps, zero baseline)" in text
    )
    assert "lung_effect" in text and "deletion" not in text


def test_values_do_not_depend_on_the_batch_size_and_are_seeded() -> None:
    torch.manual_seed(0)
    model, x = SmallNet().eval(), torch.rand(5, 1, 16, 16)
    lungs = torch.zeros(5, 16, 16, dtype=torch.bool)
    lungs[:, 4:12, 2:14] = True
    maps = torch.rand(5, 16, 16)
    ps = PerturbationSettings(steps=4, road_percentiles=(30, 70))
    a, _, meta = faithfulness_metrics(model, x, maps, lungs, None, ALL, ps, batch_size=2)
    b, _, _ = faithfulness_metrics(model, x, maps, lungs, None, ALL, ps, batch_size=5)
    c, _, _ = faithfulness_metrics(model, x[:3], maps[:3], lungs[:3], None, ALL, ps, 3)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-7)
        torch.testing.assert_close(a[key][:3], c[key], rtol=0, atol=1e-7)
    assert meta["settings"]["steps"] == 4 and meta["n_empty_maps"] == 0


def test_empty_maps_and_empty_regions_give_nan_where_undefined() -> None:
    torch.manual_seed(0)
    model, x = SmallNet().eval(), torch.rand(3, 1, 16, 16)
    lungs = torch.zeros(3, 16, 16, dtype=torch.bool)
    lungs[:2, 4:12, 2:14] = True  # image 2: no lungs at all
    maps = torch.rand(3, 16, 16)
    maps[1] = -1.0  # no positive mass
    ps = PerturbationSettings(steps=2, road_percentiles=(50,))
    values, _, meta = faithfulness_metrics(model, x, maps, lungs, [0, 1, 0], ALL, ps, 4)
    assert meta["n_empty_maps"] == 1
    for key in ("deletion", "insertion", "road", "lung_effect_salient"):
        assert math.isnan(values[key][1]) and not math.isnan(values[key][0])
    for key in ("lung_effect", "lung_drop", "lung_drop_whole"):
        assert not math.isnan(values[key][1])  # saliency-free: defined for the empty map
        assert math.isnan(values[key][2])  # no lungs: nothing to match


def test_output_modes_and_settings_are_checked() -> None:
    logit = torch.tensor([[0.5], [-2.0]])
    single = ExplainedProbability(BinaryLogitTarget(torch.tensor([1.0, -1.0])), logit)
    assert single.mode == "sigmoid"
    torch.testing.assert_close(
        single(logit, torch.arange(2)), torch.sigmoid(torch.tensor([0.5, 2.0])).double()
    )
    two = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    probs = ExplainedProbability(ClassTarget([1, 1]), two)(two, torch.arange(2))
    torch.testing.assert_close(probs, two.double().softmax(1)[:, 1])
    raw = ExplainedProbability(ClassTarget(1), two, "logit")(two, torch.tensor([0, 0]))
    torch.testing.assert_close(raw, torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="softmax"):
        ExplainedProbability(lambda out: out[:, 0], two, "softmax")
    for bad in ({"steps": 0}, {"baseline": "noise"}, {"output": "prob"},
                {"road_percentiles": (0, 50)}, {"blur_sigma": 0.0}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            PerturbationSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed"):
        LungAttentionScorer(faithfulness=("deletion", "sufficiency"))
    scorer = LungAttentionScorer(faithfulness="road")
    assert scorer.faithfulness == ("road",)
    with pytest.raises(ValueError, match="need the model"):
        scorer.score(None, torch.rand(1, 1, 8, 8), masks=torch.ones(1, 8, 8, dtype=torch.bool),
                     saliency=torch.rand(1, 8, 8))  # fmt: skip


_W = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))


class _Linear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * _W).sum((1, 2, 3))
        return torch.stack([-z, z], 1)


@settings(max_examples=15, deadline=None)
@given(
    scale=st.floats(0.01, 100.0),
    seed=st.integers(0, 10_000),
)
def test_deletion_and_insertion_depend_only_on_the_order_of_the_positive_part(
    scale: float, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, 8, 8, generator=gen)
    maps = torch.randn(2, 8, 8, generator=gen)
    lungs = torch.zeros(2, 8, 8, dtype=torch.bool)
    ps = PerturbationSettings(steps=4, baseline="mean")
    names = ("deletion", "insertion")
    a, _, _ = faithfulness_metrics(_Linear(), x, maps, lungs, 1, names, ps, 4)
    # Scaling the map, or changing its negative part, changes nothing.
    b, _, _ = faithfulness_metrics(_Linear(), x, maps * scale, lungs, 1, names, ps, 4)
    c, _, _ = faithfulness_metrics(_Linear(), x, maps.clamp_min(0), lungs, 1, names, ps, 4)
    for key in names:
        torch.testing.assert_close(a[key], b[key])
        torch.testing.assert_close(a[key], c[key])
        assert bool(((a[key] >= 0) & (a[key] <= 1)).all())  # areas of probabilities


@settings(max_examples=30, deadline=None)
@given(start=st.floats(-1, 1), end=st.floats(-1, 1), steps=st.integers(1, 20))
def test_curve_area_of_a_straight_line_is_its_midpoint(
    start: float, end: float, steps: int
) -> None:
    line = torch.linspace(start, end, steps + 1, dtype=torch.float64)[None]
    assert float(curve_area(line)[0]) == pytest.approx((start + end) / 2, abs=1e-12)


def test_forward_passes_per_image_are_what_the_docs_say() -> None:
    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.images = nn.Linear(64, 2), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.images += x.shape[0]
            out: torch.Tensor = self.fc(x.flatten(1))
            return out

    x = torch.rand(3, 1, 8, 8)
    lungs = torch.zeros(3, 8, 8, dtype=torch.bool)
    lungs[:, 2:6, 1:7] = True
    expected = {
        ("deletion",): 17,
        ("insertion",): 18,
        ("deletion", "insertion"): 34,
        ("road",): 19,
        ("lungs",): 67,
        ALL: 118,
    }
    for names, per_image in expected.items():  # docs/attention.md, "Cost"
        model = Counting()
        faithfulness_metrics(model, x, torch.rand(3, 8, 8), lungs, None, names,
                             PerturbationSettings(), 2)  # fmt: skip
        assert model.images == 3 * per_image


def test_faithfulness_refuses_class_names_that_do_not_match_the_model() -> None:
    """Supplied maps, a 3-output model, 4 class names: refused, not the output read by index."""
    torch.manual_seed(0)
    net, x = SmallNet(3).eval(), torch.rand(2, 1, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 2:14] = True
    scorer = LungAttentionScorer(n_boot=10, faithfulness=("deletion",),
                                 perturbation=PerturbationSettings(steps=2))  # fmt: skip
    saliency = torch.rand(2, 16, 16)
    with pytest.raises(ValueError, match="3 outputs but the class names list 4"):
        scorer.score(net, x, targets="b", class_names=["a", "b", "c", "d"], masks=masks,
                     saliency=saliency)  # fmt: skip
    report = scorer.score(net, x, targets="b", class_names=["a", "b", "c"], masks=masks,
                          saliency=saliency)  # fmt: skip
    assert all(math.isfinite(row["deletion"]) for row in report.rows)
    two = torch.tensor([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="3 outputs but the class names list 2"):
        ExplainedProbability(ClassTarget(1, n_outputs=2), two)


def test_image_generators_never_share_a_stream_across_images_and_uses() -> None:
    """One generator per image and use: the salts in use (0 deletion/insertion, 1-4 lung
    effect, 11 ROAD order, 100 + 2j + kind ROAD noise) reach past any small multiplier."""
    salts = [0, 1, 2, 3, 4, 11, *range(100, 100 + 2 * 9)]
    seeds = {
        (seed, i, salt): image_generator(seed, i, salt).initial_seed()
        for seed in (0, 1) for i in range(8) for salt in salts
    }  # fmt: skip
    assert len(set(seeds.values())) == len(seeds)
    for a, b in (((0, 0, 11), (0, 1, 4)), ((0, 0, 114), (0, 2, 100)), ((0, 0, 0), (1, 0, 0))):
        assert not torch.equal(torch.randperm(64, generator=image_generator(*a)),
                               torch.randperm(64, generator=image_generator(*b)))  # fmt: skip
        assert not torch.equal(torch.randn(8, generator=image_generator(*a)),
                               torch.randn(8, generator=image_generator(*b)))  # fmt: skip
    same = image_generator(3, 2, 11), image_generator(3, 2, 11)
    assert torch.equal(torch.randn(8, generator=same[0]), torch.randn(8, generator=same[1]))
