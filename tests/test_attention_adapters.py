"""pytorch-grad-cam and captum methods by name (issue 21, items 1 and 4): parity with the
built-in methods and with the libraries called directly, settings passed through, the
missing-extra error, sanity checks and the scorer's contract (grads, training flags)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _attention import SmallNet, corr, covid_films, resnet18_1ch
from cxr_curriculum.attention import (
    GradCAM,
    IntegratedGradients,
    LungAttentionScorer,
    make_saliency,
)

pytestmark = pytest.mark.usefixtures("one_thread")
pgc = pytest.importorskip("pytorch_grad_cam", reason="needs the 'saliency' extra")
captum = pytest.importorskip("captum", reason="needs the 'saliency' extra")

SIZE = 64


@pytest.fixture(scope="module")
def covid(data_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Six real covid-chestxray films at 64 px with their V7 lung masks."""
    x, m, _ = covid_films(data_root, 6, SIZE)
    return x, m


@pytest.mark.realdata
def test_adapted_gradcam_equals_the_builtin_one_on_real_films(covid: tuple) -> None:
    x, masks = covid
    model = resnet18_1ch(2)
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()
    ours = LungAttentionScorer(method="gradcam", target_layer="layer3", n_boot=50)
    adapted = LungAttentionScorer(
        method="pytorch-grad-cam:GradCAM", target_layer="layer3", n_boot=50
    )
    a = ours.score(model, x, targets=pred, masks=masks)
    b = adapted.score(model, x, targets=pred, masks=masks)
    assert a.saliency is not None and b.saliency is not None
    checked = 0
    for i in range(len(x)):
        if a.saliency[i].std() > 0:
            assert corr(a.saliency[i], b.saliency[i]) > 0.99
            checked += 1
    assert checked >= 3
    # Not min-max normalised: the very same values, hence the same lung metrics.
    torch.testing.assert_close(b.saliency, a.saliency, rtol=1e-4, atol=1e-6)
    assert b.meta["method"] == "pytorch-grad-cam:GradCAM" and b.meta["map_size"] == [4, 4]
    assert b.meta["target_layer"] == "layer3"
    for row_a, row_b in zip(a.rows, b.rows, strict=True):
        assert row_b["lift"] == pytest.approx(row_a["lift"], rel=1e-4, nan_ok=True)


def test_unnormalised_scorecam_matches_the_librarys_normalised_map() -> None:
    torch.manual_seed(1)  # a net whose ScoreCAM maps are not all zero
    net, x = SmallNet(), torch.rand(3, 1, 32, 32)
    ours = make_saliency("pytorch-grad-cam:ScoreCAM", net, "features.2")(x, [0, 1, 0])
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = ScoreCAM(net, [net.features[2]])
    lib = torch.from_numpy(cam(x, [ClassifierOutputTarget(k) for k in [0, 1, 0]]))
    cam.activations_and_grads.release()
    for i in range(3):
        assert corr(ours[i], lib[i]) > 0.99
    assert float(ours.amax()) != pytest.approx(1.0)  # the library's scale is not applied


@pytest.mark.realdata
def test_captum_occlusion_through_the_scorer_equals_captum_called_directly(covid: tuple) -> None:
    x, masks = covid
    x, masks = x[:3], masks[:3]
    model = resnet18_1ch(2)
    call = {"sliding_window_shapes": (1, 16, 16), "strides": (1, 8, 8), "baselines": 0.0}
    scorer = LungAttentionScorer(method="captum:Occlusion", method_kwargs={"call": call},
                                 n_boot=50)  # fmt: skip
    report = scorer.score(model, x, targets=[1, 0, 1], masks=masks, patient_ids=["a", "b", "a"])
    from captum.attr import Occlusion

    direct = Occlusion(model).attribute(x, target=torch.tensor([1, 0, 1]), **call).sum(1)
    assert report.saliency is not None
    torch.testing.assert_close(report.saliency, direct)
    assert report.meta["method"] == "captum:Occlusion" and len(report) == 3
    assert report.aggregate["lift"].n_clusters == 2
    assert all(0.0 <= r["energy_in_mask"] <= 1.0 for r in report.rows if not r["saliency_empty"])


def test_captum_integrated_gradients_with_the_midpoint_rule_equals_the_builtin() -> None:
    torch.manual_seed(0)
    net, x = SmallNet(), torch.rand(3, 1, 16, 16)
    call = {"n_steps": 16, "method": "riemann_middle", "baselines": 0.0}
    adapted = make_saliency("captum:IntegratedGradients", net, call=call)(x, [1, 0, 1])
    builtin = IntegratedGradients(net, steps=16)(x, [1, 0, 1])
    torch.testing.assert_close(adapted, builtin, rtol=1e-4, atol=1e-6)


def test_captum_layer_gradcam_equals_the_builtin_gradcam_also_for_a_single_logit() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    for out, targets in ((2, [1, 0, 1, 1]), (1, None)):  # None: the sign of a single logit
        net = SmallNet(out)
        method = make_saliency("captum:LayerGradCam", net, "features.2",
                               call={"relu_attributions": True})  # fmt: skip
        adapted = method(x, targets)
        assert method.map_size == (8, 8)
        torch.testing.assert_close(adapted, GradCAM(net, "features.2")(x, targets))
    with torch.no_grad():
        assert (SmallNet(1)(x) < 0).any() or (SmallNet(1)(x) > 0).any()


def test_noise_tunnel_wraps_the_named_method() -> None:
    net, x = SmallNet(), torch.rand(2, 1, 16, 16)
    maps = make_saliency(
        "captum:NoiseTunnel", net, init={"attribution_method": "Saliency"},
        call={"nt_samples": 3, "stdevs": 0.05},
    )(x, 1)  # fmt: skip
    assert maps.shape == (2, 16, 16) and bool((maps >= 0).all())  # Saliency: abs gradients
    with pytest.raises(ValueError, match="attribution_method"):
        make_saliency("captum:NoiseTunnel", net)


def test_settings_and_names_are_checked() -> None:
    net = SmallNet()
    with pytest.raises(ValueError, match=r"'init'.*'call'.*\['n_steps'\]"):
        make_saliency("captum:IntegratedGradients", net, n_steps=8)
    with pytest.raises(ValueError, match="captum has no method class 'Nope'"):
        LungAttentionScorer(method="captum:Nope")
    with pytest.raises(ValueError, match="LIBRARY:Class"):
        LungAttentionScorer(method="gradcamlib:GradCAM")
    with pytest.raises(ValueError, match="one neuron"):
        make_saliency("captum:NeuronGradient", net, "features.2")
    with pytest.raises(ValueError, match="takes no target_layer"):
        make_saliency("captum:Saliency", net, "features.2")
    with pytest.raises(ValueError, match="no submodule"):
        make_saliency("pytorch-grad-cam:GradCAM", net, "features.9")


def test_missing_library_names_the_saliency_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("pytorch_grad_cam", "captum", "captum.attr"):
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    for method in ("pytorch-grad-cam:ScoreCAM", "captum:Occlusion"):
        with pytest.raises(ImportError, match=r"'saliency' extra: pip install .*\[saliency\]"):
            LungAttentionScorer(method=method)
    LungAttentionScorer(method="gradcam")  # the built-in methods need neither


@pytest.mark.slow
def test_the_libraries_are_imported_only_when_named() -> None:
    code = (
        "import sys, cxr_curriculum, cxr_curriculum.attention as a; "
        "a.LungAttentionScorer(method='gradcam'); "
        "print(sorted(m for m in ('pytorch_grad_cam', 'captum') if m in sys.modules))"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_adapters_leave_grads_and_training_flags_alone() -> None:
    net = SmallNet().train()
    x = torch.rand(2, 1, 16, 16)
    for method, layer in (("pytorch-grad-cam:GradCAMPlusPlus", "features.2"),
                          ("captum:InputXGradient", None)):  # fmt: skip
        maps = make_saliency(method, net, layer)(x, [0, 1])
        assert maps.shape == (2, 16, 16)
        assert net.training and all(m.training for m in net.modules())
        assert all(p.grad is None for p in net.parameters())
        assert not net.features[2]._forward_hooks  # the library's hooks are released


def test_fullgrad_maps_come_back_normalised_and_the_report_says_so() -> None:
    net, x = SmallNet(), torch.rand(2, 1, 16, 16)
    scorer = LungAttentionScorer(method="pytorch-grad-cam:FullGrad", target_layer="features.2",
                                 n_boot=50)  # fmt: skip
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 2:14] = True
    with pytest.warns(UserWarning, match="min-max normalised"):
        report = scorer.score(net, x, targets=0, masks=masks)
    assert any("min-max" in w for w in report.meta["warnings"])


@pytest.mark.realdata
def test_sanity_check_works_for_adapted_methods(covid: tuple) -> None:
    x, masks = covid
    x, masks = x[:4], masks[:4]
    model = resnet18_1ch(2)
    for method, layer in (("pytorch-grad-cam:GradCAM", "layer3"), ("captum:Saliency", None)):
        scorer = LungAttentionScorer(method=method, target_layer=layer, n_boot=50)
        result = scorer.sanity_check(model, x, masks=masks, max_steps=3)
        assert result.meta["method"] == method
        assert result.rows[0]["spearman"] == pytest.approx(1.0)
        assert result.rows[-1]["n_randomised"] == result.meta["n_layers"]
        assert result.rows[-1]["spearman"] < 0.9  # the maps follow the weights
        assert "fully randomised" in result.summary()


def test_adapters_refuse_class_names_that_do_not_match_the_model() -> None:
    """A 3-output model with 4 class names: refused as the built-in methods refuse it."""
    net, x = SmallNet(3), torch.rand(2, 1, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 2:14] = True
    names = ["a", "b", "c", "d"]
    for method, layer in (("gradcam", "features.2"), ("captum:Saliency", None),
                          ("pytorch-grad-cam:GradCAM", "features.2")):  # fmt: skip
        scorer = LungAttentionScorer(method=method, target_layer=layer, n_boot=10)
        with pytest.raises(ValueError, match="3 outputs but the class names list 4"):
            scorer.score(net, x, targets="b", class_names=names, masks=masks)
        report = scorer.score(net, x, targets="b", class_names=names[:3], masks=masks)
        assert report.saliency is not None and report.saliency.shape == (2, 16, 16)
