"""The optimiser's parameter groups: weight decay on weights only, and the new layers' own learning rate."""

from __future__ import annotations

import pytest

from calcidet.model.module import CalcinosisDetector


def _groups(**kwargs) -> tuple[CalcinosisDetector, list[dict]]:
    module = CalcinosisDetector(arch="fcos_efficientnet_lite0", weights_backbone=None, lr=2e-3, **kwargs)
    module.schedule_steps = 10  # as a resumed run has it: no trainer needed to plan the schedule
    return module, module.configure_optimizers()["optimizer"].param_groups


def _names(module: CalcinosisDetector, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in module.model.named_parameters() if id(p) in ids}


def test_default_is_two_groups_with_decay_on_weights_only() -> None:
    module, groups = _groups()
    assert len(groups) == 2  # what checkpoints saved before head_lr_scale hold, so they still resume
    decay, no_decay = groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and not any(n.endswith(".bias") for n in _names(module, decay))
    assert {g["initial_lr"] for g in groups} == {2e-3}
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert _names(module, decay) | _names(module, no_decay) == trainable


def test_head_lr_scale_speeds_the_new_layers_only() -> None:
    module, groups = _groups(head_lr_scale=3.0)
    by_lr: dict[float, set[str]] = {}
    for g in groups:
        by_lr.setdefault(round(g["initial_lr"], 9), set()).update(_names(module, g))
    assert set(by_lr) == {2e-3, 6e-3}
    assert by_lr[2e-3] and all(n.startswith("net.backbone.body.") for n in by_lr[2e-3])
    assert any(n.startswith("net.backbone.fpn.") for n in by_lr[6e-3])
    assert any(n.startswith("net.head.") for n in by_lr[6e-3])
    assert not any(n.startswith("net.backbone.body.") for n in by_lr[6e-3])
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert by_lr[2e-3] | by_lr[6e-3] == trainable and not by_lr[2e-3] & by_lr[6e-3]


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_head_lr_scale_must_be_positive(scale: float) -> None:
    with pytest.raises(ValueError, match="head_lr_scale must be > 0"):
        CalcinosisDetector(head_lr_scale=scale)
