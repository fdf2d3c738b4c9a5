"""A second student architecture is one class and one registration line: this file adds a pair
potential (no angles, no e3nn) and runs it through training, export and the ASE calculator with
nothing else changed."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from torch import nn

from mlffd.errors import MLFFDError
from mlffd.model.potential import EdgePotential
from mlffd.model.radial import BesselBasis, PolynomialCutoff
from mlffd.model.registry import architectures, build_model, register_architecture


@dataclass
class PairConfig:
    elements: List[str]
    cutoff: float = 4.0
    n_radial: int = 8
    atomic_energies: Optional[List[float]] = None
    energy_scale: float = 1.0
    architecture: str = "pair-test"
    num_interactions = 1  # not a setting: one hop of neighbours (what LAMMPS needs for its ghosts)

    def to_dict(self) -> dict:
        return asdict(self)


@register_architecture("pair-test", PairConfig)
class PairPotential(EdgePotential):
    """E_i = e(s_i) + 1/2 sum_j phi_{s_i}(r_ij): a learned radial pair term per centre species."""

    def __init__(self, config: PairConfig):
        super().__init__()
        self.config = config
        n_species = len(config.elements)
        self.basis = BesselBasis(config.cutoff, config.n_radial)
        self.envelope = PolynomialCutoff(config.cutoff)
        self.phi = nn.Linear(config.n_radial, n_species)
        shifts = config.atomic_energies or [0.0] * n_species
        self.register_buffer("atomic_energies", torch.tensor(shifts, dtype=torch.get_default_dtype()))
        self.energy_scale = float(config.energy_scale)

    def atom_energy(self, edge_vec: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        length = torch.linalg.vector_norm(edge_vec, dim=1)
        pair = self.phi(self.basis(length)) * self.envelope(length).unsqueeze(-1)
        pair = pair.gather(1, species.index_select(0, edge_index[0]).unsqueeze(1)).squeeze(1)
        energy = torch.zeros(species.shape[0], dtype=pair.dtype, device=pair.device).index_add(0, edge_index[0], pair)
        return 0.5 * energy * self.energy_scale + self.atomic_energies.index_select(0, species)


def _cu_dataset(path, n=12):
    from mlffd.data.writer import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(path, "emt", "ase EMT") as writer:
        for i in range(n):
            atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
            atoms.set_cell(atoms.cell.array * (0.97 + 0.06 * rng.random()), scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_stress()
            writer.append(atoms, sampler="rattle", temperature=600.0, seed=i, key=f"cu/{i}")
    return path


def test_registered_architecture_trains_exports_and_runs(tmp_path):
    from mlffd import MLFFDCalculator
    from mlffd.export.freeze import export_checkpoint
    from mlffd.training.checkpoint import read_checkpoint
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer

    assert {"pair-test", "scalar-mace"} <= set(architectures())
    config = TrainConfig.from_dict({"architecture": "pair-test", "cutoff": 4.0, "epochs": 8, "lr": 0.02,
                                    "dtype": "float64"})
    Trainer(str(_cu_dataset(tmp_path / "cu.h5")), str(tmp_path / "run"), config).run(quiet=True)
    payload = read_checkpoint(tmp_path / "run")
    assert payload["model_config"]["architecture"] == "pair-test"
    meta = export_checkpoint(tmp_path / "run", tmp_path / "pair.pt")
    assert meta["ops"] == [] and meta["model_config"]["architecture"] == "pair-test"

    model = build_model(payload["model_config"]).double()
    model.load_state_dict(payload["model"])
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=2)
    atoms.calc = MLFFDCalculator(str(tmp_path / "pair.pt"))
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.abs(forces).max() > 1e-3
    # the frozen file computes what the Python model computes ...
    from mlffd.neighbours import neighbour_graph

    edge_index, edge_vec = neighbour_graph(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    out = model(torch.from_numpy(edge_vec), torch.zeros(len(atoms), dtype=torch.long), torch.from_numpy(edge_index),
                len(atoms))
    assert energy == pytest.approx(float(out["energy"]), abs=1e-10)
    # ... and its forces are the gradient of its energy (the base class's contract)
    step, k = 1e-5, 3
    displaced = [atoms.copy() for _ in range(2)]
    for sign, a in zip((1, -1), displaced):
        a.positions[k, 0] += sign * step
        a.calc = MLFFDCalculator(str(tmp_path / "pair.pt"))
    numeric = -(displaced[0].get_potential_energy() - displaced[1].get_potential_energy()) / (2 * step)
    assert forces[k, 0] == pytest.approx(numeric, abs=1e-6)


def test_unknown_architecture_is_named(tmp_path):
    from mlffd.training.config import TrainConfig

    with pytest.raises(MLFFDError, match="unknown student architecture 'nope'"):
        build_model({"architecture": "nope", "elements": ["Si"]})
    with pytest.raises(MLFFDError, match="unknown architecture 'nope'"):
        TrainConfig.from_dict({"architecture": "nope"}).validate()


def test_checkpoints_without_an_architecture_are_the_default_student():
    from mlffd.model.student import StudentPotential

    assert type(build_model({"elements": ["Si"], "channels": 4})) is StudentPotential
