"""The one Voigt order in mlffd: ASE's (xx, yy, zz, yz, xz, xy), for stresses and virials in data sets,
in the ASE calculator and in the frozen model's per-atom virial alike. LAMMPS orders its per-atom
virial (xx, yy, zz, xy, xz, yz): the conversion lives only at the LAMMPS edge (`TO_LAMMPS`, used by
pair_mlffd.cpp through the contract header and by the LAMMPS runner)."""

from __future__ import annotations

import numpy as np

PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # the (row, column) of each Voigt component
FLAT_INDEX = tuple(3 * a + b for a, b in PAIRS)  # each component's index in a row-major flattened 3 x 3
# entry k of a row-major 3 x 3 (symmetric) -> its Voigt component
TO_MATRIX = tuple(next(v for v, (a, b) in enumerate(PAIRS) if {a, b} == {k // 3, k % 3}) for k in range(9))
# ASE order -> LAMMPS per-atom order (a swap of xy and yz: its own inverse)
TO_LAMMPS = (0, 1, 2, 5, 4, 3)


def voigt(tensor) -> np.ndarray:
    """A stress (or virial) as a Voigt 6-vector, from that or a 3 x 3 tensor."""
    tensor = np.asarray(tensor, dtype=np.float64)
    return tensor.reshape(9)[list(FLAT_INDEX)] if tensor.shape == (3, 3) else tensor.reshape(6)
