"""FROC and precision-recall plots for ``calcidet evaluate`` (PNG, matplotlib's Agg backend).

    calcidet evaluate --gt annotations.json --pred results/detections.csv --out report/

Text uses matplotlib's bundled DejaVu Sans, so nothing is downloaded and no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from calcidet.model.metrics import FrocCurve  # noqa: E402


def plot_froc(curve: FrocCurve, path: Path, ci: dict[float, tuple[float, float]] | None = None,
              title: str = "FROC") -> None:
    """Sensitivity against false positives per image (log scale), the 1/8..8 FP points marked.

    Args:
        curve: from ``model.metrics.froc_curve``.
        path: PNG to write.
        ci: optional 95% interval of the sensitivity at each rate, drawn as error bars.
        title: plot title.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    rates = np.array(sorted(curve.at_rates))
    left, right = rates.min() / 2, rates.max() * 2
    fp = np.maximum(curve.fp_per_image, left)  # 0 FP has no place on a log axis: draw it at the edge
    ax.step(fp, curve.sensitivity, where="post", color="tab:blue", label="detector")
    if fp[-1] < right:  # past the last detection the sensitivity stays where it is (as at_rates reads it)
        ax.plot([fp[-1], right], [curve.sensitivity[-1]] * 2, ":", color="tab:blue",
                label="no more detections (threshold)")
    sens = np.array([curve.at_rates[r] for r in rates])
    if ci:
        low = np.array([ci[r][0] for r in rates])
        high = np.array([ci[r][1] for r in rates])
        ax.errorbar(rates, sens, yerr=[np.clip(sens - low, 0, None), np.clip(high - sens, 0, None)],
                    fmt="o", color="tab:red", capsize=3, label="at 1/8..8 FP/image (95% CI)")
    else:
        ax.plot(rates, sens, "o", color="tab:red", label="at 1/8..8 FP/image")
    ax.set_xscale("log", base=2)
    ax.set_xlim(left, right)
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("lesion sensitivity")
    ax.set_title(f"{title}  (CPM {curve.cpm:.3f}, {curve.num_lesions} lesions, {curve.num_images} images)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_pr(recall: np.ndarray, precision: np.ndarray, path: Path, ap50: float, title: str = "Precision-recall") -> None:
    """pycocotools' interpolated precision-recall curve at IoU 0.5 (its mean is AP50).

    Args:
        recall: recall points (``model.metrics.pr_curve``).
        precision: precision at each point.
        path: PNG to write.
        ap50: the AP50 to print in the title.
        title: plot title.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    ax.plot(recall, precision, color="tab:blue")
    ax.fill_between(recall, 0, np.nan_to_num(precision), alpha=0.15, color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (IoU >= 0.5)")
    ax.set_ylabel("precision")
    ax.set_title(f"{title}  (AP50 {ap50:.3f})")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
