"""An ASE calculator whose numbers come from a peer's own environment (`worker.py` there).

    calc = RemoteCalculator(venv_python, "mace", "mace.model")
    atoms.calc = calc; atoms.get_forces(); calc.time_md(...); calc.close()

The property suite then runs on a MACE or graph-pes model exactly as on an mlffd student.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

WORKER = Path(__file__).with_name("worker.py")


class RemoteCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, python: str | Path, kind: str, model: str | Path, threads: int = 2, stderr=None, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self._proc = subprocess.Popen(
            [str(python), str(WORKER), "--kind", kind, "--model", str(model), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)

    def _ask(self, request: dict) -> dict:
        if self._proc.poll() is not None:
            raise RuntimeError(f"{self.kind} worker exited (rc {self._proc.returncode}); see its stderr")
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.kind} worker closed its output (rc {self._proc.wait()}); see its stderr")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.kind} worker: {answer['error']}")
        return answer

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        answer = self._ask({"op": "calculate", "numbers": a.numbers.tolist(), "positions": a.positions.tolist(),
                            "cell": np.asarray(a.cell).tolist(), "pbc": [bool(x) for x in a.pbc]})
        self.results = {"energy": answer["energy"], "free_energy": answer["energy"],
                        "forces": np.array(answer["forces"])}
        if "stress" in answer:
            self.results["stress"] = np.array(answer["stress"])

    def time_md(self, structure: str | Path, **settings) -> dict:
        """ms per ASE velocity-Verlet step of the peer, timed inside its own process."""
        return self._ask({"op": "time_md", "structure": str(structure), **settings})

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
