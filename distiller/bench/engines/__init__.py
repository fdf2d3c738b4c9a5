"""The engines `mlffd bench` times, by name. An engine is a module with `rows(plan: BenchPlan)`
yielding one `mlffd.bench.plan.row` per model and size it runs (a skipped or failed run is a row
that says why); adding one is its module here plus its line below."""

from __future__ import annotations

from mlffd.bench.engines import ase, lammps

ENGINES = {
    "ase": ase.rows,
    "lammps": lammps.rows,
}
