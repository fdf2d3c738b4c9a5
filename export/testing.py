"""Small exported students with random weights, for tests and for hosts' own test suites."""

from __future__ import annotations

from pathlib import Path

import torch

from mlffd.model.student import StudentConfig, StudentPotential
from mlffd.export.freeze import freeze


def make_demo_model(path: str | Path, elements=("Si",), num_interactions: int = 2, dtype: str = "float64",
                    use_ops: bool = False, channels: int = 8, lmax: int = 2, cutoff: float = 4.0,
                    seed: int = 0, products: int | None = None, pair_repulsion: bool = False) -> Path:
    """Write a frozen student with random weights (NOT a trained potential) and return its path."""
    torch.manual_seed(seed)
    config = StudentConfig(
        elements=list(elements), cutoff=cutoff, num_interactions=num_interactions, channels=channels,
        lmax=lmax, products=products, pair_repulsion=pair_repulsion, radial_hidden=16, mlp_hidden=16,
        avg_num_neighbors=10.0,
        atomic_energies=[-1.0 - 0.5 * k for k in range(len(elements))], energy_scale=0.5,
    )
    freeze(StudentPotential(config), path, dtype=dtype, use_ops=use_ops,
           teacher={"name": "random", "version": "untrained"})
    return Path(path)
