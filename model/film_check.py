"""Does an image look like a plain radiograph at all? The image-level scope check of ``calcidet detect``.

    check = RadiographCheck.load()          # the reference shipped with calcidet
    check(film)                             # ScopeVerdict("out_of_scope", "image: ...") or ScopeVerdict("unknown")

A PACS export or a shared folder also holds CT and MR slices, ultrasound frames, scanned forms and
photographs, saved as PNG/JPEG with no tags to say so. Detecting on them wastes time and yields false
boxes; ``calcidet detect --image-check`` runs this check on every film whose tags name no body part.
The check embeds the image with the ImageNet EfficientNet-Lite0 that calcidet's backbone starts from
(224 x 224, globally pooled: 1280 numbers) and measures the mean cosine distance to its ``k`` nearest
reference films (``radiograph_reference.npz``: the 400 real films in ``data/films``). Beyond
``threshold`` the image is ``out_of_scope``.

The threshold is the largest distance among 715 real limb films that are in neither the reference nor
the held-out test set, so it is set without looking at any out-of-scope image
(``benchmarks/radiograph_check.py`` builds the reference, sets the threshold and measures it). It still
drops about 1 held-out limb film in 200, and procedural films too, which is why detect runs it only
when asked.

What it cannot do: tell a chest film from a limb film. A chest radiograph looks like a radiograph
(pydicom-data's chest CR is nearer the reference than many shoulder films), so it stays ``unknown`` and
is read; DICOM tags remain the way such films are kept out (``data.scope``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from calcidet.data.scope import ScopeVerdict
from calcidet.model.efficientnet_lite import EfficientNetLite, lite_weights_path, load_lite_weights

REFERENCE = Path(__file__).with_name("radiograph_reference.npz")
EMBED_SIZE = 224  # the ImageNet resolution the weights were trained at


class RadiographCheck:
    """Marks images far from every reference radiograph out of scope (see the module docstring).

    Args:
        reference: L2-normalised embeddings of in-scope films, N x 1280.
        threshold: mean cosine distance to the ``k`` nearest references beyond which an image is out of scope.
        k: neighbours averaged (several, so one odd reference film does not vouch for an image).
    """

    def __init__(self, reference: np.ndarray, threshold: float, k: int = 5) -> None:
        self.net = EfficientNetLite(0, num_classes=1000).eval()
        load_lite_weights(self.net, lite_weights_path("DEFAULT"))
        self.set_reference(reference, threshold, k)

    def set_reference(self, reference: np.ndarray, threshold: float, k: int = 5) -> None:
        """Compare with other films (e.g. embeddings from ``embed``), keeping the network."""
        if reference.ndim != 2 or len(reference) < k:
            raise ValueError(f"reference must be N x D with N >= k={k}, got shape {reference.shape}")
        self.reference = torch.from_numpy(np.asarray(reference, dtype=np.float32))
        self.threshold, self.k = float(threshold), k

    @classmethod
    def load(cls, path: str | Path = REFERENCE) -> RadiographCheck:
        """The check from a reference file (``save``'s format; by default the one shipped with calcidet)."""
        with np.load(path) as ref:
            return cls(ref["embeddings"], float(ref["threshold"]), int(ref["k"]))

    def save(self, path: str | Path) -> None:
        """Write the reference (float16 embeddings: half the size, distances unchanged to 1e-3)."""
        np.savez_compressed(path, embeddings=self.reference.numpy().astype(np.float16),
                            threshold=np.float32(self.threshold), k=np.int64(self.k))

    @torch.no_grad()
    def embed(self, images: list[np.ndarray]) -> torch.Tensor:
        """L2-normalised embeddings of float 0..1 H x W films (any size), one row per film."""
        batch = torch.cat([F.interpolate(torch.as_tensor(im, dtype=torch.float32)[None, None],
                                         size=(EMBED_SIZE, EMBED_SIZE), mode="area") for im in images])
        batch = (batch.expand(-1, 3, -1, -1) - 0.5) / 0.5  # grey to RGB, Lite0's normalisation
        features = self.net.head(self.net.features(batch)[-1])
        return F.normalize(F.adaptive_avg_pool2d(features, 1).flatten(1), dim=1)

    def distances(self, images: list[np.ndarray]) -> np.ndarray:
        """Mean cosine distance of each film to its ``k`` nearest reference films (0 = identical)."""
        similarity = self.embed(images) @ self.reference.T
        return (1 - similarity.topk(self.k, dim=1).values).mean(1).numpy()

    def __call__(self, image: np.ndarray) -> ScopeVerdict:
        distance = float(self.distances([image])[0])
        if distance > self.threshold:
            return ScopeVerdict("out_of_scope", f"image: unlike a plain radiograph "
                                                f"(distance {distance:.3f} > {self.threshold:.3f})")
        return ScopeVerdict("unknown")
