import os

import pytest

# Two cores: keep torch from oversubscribing when tests run beside builds.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_model_factory(tmp_path_factory):
    """Exported random-weight students, cached per (elements, layers, dtype, ops)."""
    from mlffd.export.testing import make_demo_model

    cache = {}

    def make(elements=("Si",), num_interactions=2, dtype="float64", use_ops=False):
        key = (tuple(elements), num_interactions, dtype, use_ops)
        if key not in cache:
            name = f"demo_{'-'.join(elements)}_L{num_interactions}_{dtype}_{'ops' if use_ops else 'ref'}.pt"
            path = tmp_path_factory.mktemp("models") / name
            cache[key] = make_demo_model(path, elements=elements, num_interactions=num_interactions,
                                         dtype=dtype, use_ops=use_ops)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def plugin() -> str:
    """pair_style mlffd built for this environment (incremental after the first time): its path."""
    from mlffd.lammps_plugin.build import build

    return build(jobs=2, verbose=False)


@pytest.fixture(scope="session")
def emt_cu_student(tmp_path_factory):
    """A tiny student trained on EMT-labelled Cu (rattled and strained 32-atom cells), exported in
    float64: a smooth potential with an equilibrium near EMT's, for tests that need physics rather
    than random weights."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from mlffd.data.writer import DatasetWriter
    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer
    from mlffd.export.freeze import export_checkpoint

    d = tmp_path_factory.mktemp("emt_student")
    rng = np.random.default_rng(0)
    with DatasetWriter(d / "cu.h5", "emt", "ase EMT") as writer:
        for i in range(24):
            atoms = bulk("Cu", "fcc", a=3.59, cubic=True).repeat(2)
            strain = np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3)) * (i % 2)
            atoms.set_cell(atoms.cell.array * (0.97 + 0.06 * rng.random()) @ (0.5 * (strain + strain.T)),
                           scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.03 + 0.07 * rng.random(), atoms.positions.shape)
            atoms.calc = EMT()
            atoms.get_stress()
            writer.append(atoms, sampler="rattle", temperature=600.0, seed=i, key=f"cu/{i}")
    config = TrainConfig.from_dict({"preset": "tiny", "cutoff": 4.0, "epochs": 30, "batch_size": 4, "lr": 0.01,
                                    "ema_decay": 0.9, "stress_weight": 10.0, "dtype": "float64"})
    Trainer(str(d / "cu.h5"), str(d / "run"), config).run(quiet=True)
    export_checkpoint(d / "run", d / "cu.pt", dtype="float64", use_ops=False)
    return d / "cu.pt"
