"""Speed: time per MD step of a frozen student against its teacher and a classical potential, in
ASE and LAMMPS, each engine in its own process (`mlffd bench`, docs/benchmarks.md); shared by the
peer bake-off in benchmarks/peers.

    from mlffd.bench import bench
"""

from __future__ import annotations

from mlffd.bench.benchmark import bench

__all__ = ["bench"]
