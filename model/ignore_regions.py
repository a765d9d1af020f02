"""calcidet's FCOS head: ignore regions (COCO ``iscrowd: 1``), and the focal loss's alpha and gamma.

A region a reader could not settle (a mass too faint to call, an equivocal smudge) should not teach
the detector either way. torchvision's FCOS loss knows only lesions and background, so:

- ``IgnoreRegionTransform`` resizes ``target["ignore_boxes"]`` with the image, as torchvision's
  transform resizes ``target["boxes"]``;
- ``IgnoreRegionFCOSHead`` drops from the classification loss every background location whose
  centre lies in an ignore region. Locations assigned to a lesion keep their loss, and the box and
  centre-ness losses (foreground only) are untouched.

The dataset (``data.dataset``) puts ``ignore_boxes`` in a target only when the film has some; without
them both classes behave exactly as torchvision's.

torchvision's FCOS fixes its focal loss at alpha 0.25, gamma 2. ``IgnoreRegionFCOSHead.focal_alpha`` and
``focal_gamma`` (``model.focal_alpha`` / ``model.focal_gamma``) change them; at those values the head
returns torchvision's loss unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import sigmoid_focal_loss

# Logit given to ignored locations before torchvision's focal loss: with target 0 its loss and its
# gradient are 0 (sigmoid(-1e4) underflows to 0), and it fits float16 and bfloat16.
_SILENT_LOGIT = -1e4

TORCHVISION_FOCAL_ALPHA, TORCHVISION_FOCAL_GAMMA = 0.25, 2.0


class IgnoreRegionTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform, also resizing ``target["ignore_boxes"]``."""

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        before = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None and "ignore_boxes" in target:
            target["ignore_boxes"] = resize_boxes(target["ignore_boxes"], before, image.shape[-2:])
        return image, target


def ignored_locations(targets: list[dict[str, Tensor]], anchors: list[Tensor], matched_idxs: list[Tensor]) -> Tensor:
    """Bool ``[N, HWA]``: background locations (``matched_idxs < 0``) whose centre is in an ignore region."""
    masks = []
    for target, anchor, matched in zip(targets, anchors, matched_idxs):
        regions = target.get("ignore_boxes")
        if regions is None or not len(regions):
            masks.append(torch.zeros_like(matched, dtype=torch.bool))
            continue
        centre = (anchor[:, :2] + anchor[:, 2:]) / 2
        regions = regions.to(centre)
        inside = ((centre[:, None, 0] >= regions[None, :, 0]) & (centre[:, None, 0] <= regions[None, :, 2])
                  & (centre[:, None, 1] >= regions[None, :, 1]) & (centre[:, None, 1] <= regions[None, :, 3]))
        masks.append(inside.any(dim=1) & (matched < 0))
    return torch.stack(masks)


def classification_loss(targets: list[dict[str, Tensor]], cls_logits: Tensor, matched_idxs: list[Tensor],
                        alpha: float, gamma: float) -> Tensor:
    """FCOS's classification loss at any focal alpha and gamma: the focal loss over every location
    (one-hot on a lesion's class where a lesion is matched), summed and divided by the matched count."""
    onehot = torch.zeros_like(cls_logits)
    for i, (target, matched) in enumerate(zip(targets, matched_idxs)):
        fg = matched >= 0
        onehot[i, fg, target["labels"][matched[fg]]] = 1.0
    num_foreground = sum(int((m >= 0).sum()) for m in matched_idxs)
    return sigmoid_focal_loss(cls_logits, onehot, alpha=alpha, gamma=gamma, reduction="sum") / max(1, num_foreground)


class IgnoreRegionFCOSHead(FCOSHead):
    """``FCOSHead`` whose classification loss leaves out background locations in ignore regions, with
    the focal loss's alpha and gamma settable (torchvision's 0.25 and 2 by default)."""

    focal_alpha: float = TORCHVISION_FOCAL_ALPHA
    focal_gamma: float = TORCHVISION_FOCAL_GAMMA

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        ignored = ignored_locations(targets, anchors, matched_idxs)
        if bool(ignored.any()):
            logits = head_outputs["cls_logits"].masked_fill(ignored[..., None], _SILENT_LOGIT)
            head_outputs = {**head_outputs, "cls_logits": logits}
        losses = super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        if (self.focal_alpha, self.focal_gamma) != (TORCHVISION_FOCAL_ALPHA, TORCHVISION_FOCAL_GAMMA):
            # torchvision's loss hard-codes its focal settings: recompute that one term (cheap beside the net)
            losses["classification"] = classification_loss(
                targets, head_outputs["cls_logits"], matched_idxs, self.focal_alpha, self.focal_gamma)
        return losses
