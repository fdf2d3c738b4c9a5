import os

import pytest

# Two cores: keep torch from oversubscribing when tests run beside builds.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def demo_model_factory(tmp_path_factory):
    """Exported random-weight students, cached per (elements, layers, dtype, ops)."""
    from export.testing import make_demo_model

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
    from lammps_plugin.build import build

    return build(jobs=2, verbose=False)
