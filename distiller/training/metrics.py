"""Error metrics of student vs teacher, and the parity plot.

Units: forces eV/A (per Cartesian component), energies eV/atom, stress eV/A^3.
`rel_mae` is mean |F_student - F_teacher| over mean |F_teacher| (vector norms per atom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def force_metrics(pred: np.ndarray, ref: np.ndarray) -> dict:
    diff = pred - ref
    ss_res = float(np.sum(diff**2))
    ss_tot = float(np.sum((ref - ref.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(diff))),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "rel_mae": float(np.mean(np.linalg.norm(diff, axis=1)) / np.mean(np.linalg.norm(ref, axis=1))),
        "mean_abs_teacher": float(np.mean(np.linalg.norm(ref, axis=1))),
    }


def frame_metrics(pairs: dict) -> dict:
    out = {}
    pred, ref = pairs["energy_per_atom"]
    # Energies are compared up to nothing: the student learns absolute teacher energies.
    out["energy_mae_per_atom"] = float(np.mean(np.abs(pred - ref)))
    if "stress" in pairs:
        pred, ref = pairs["stress"]
        out["stress_mae"] = float(np.mean(np.abs(pred - ref)))
    return out


def parity_plot(pairs_by_set: dict, path: str | Path) -> None:
    """Student vs teacher forces and energies per atom, one colour per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, pairs in pairs_by_set.items():
        label = name.replace("test:", "test ")
        pred, ref = pairs["forces"]
        r2 = force_metrics(pred, ref)["r2"]
        axes[0].scatter(ref.ravel(), pred.ravel(), s=2, alpha=0.4, label=f"{label} (R$^2$={r2:.4f})")
        pred, ref = pairs["energy_per_atom"]
        axes[1].scatter(ref, pred, s=6, alpha=0.6, label=label)
    for ax, what in zip(axes, ["force component (eV/Å)", "energy (eV/atom)"]):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"teacher {what}")
        ax.set_ylabel(f"student {what}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
