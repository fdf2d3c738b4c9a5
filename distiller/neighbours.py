"""Full neighbour lists in the frozen-artifact convention (edges sorted by centre, Cartesian shifts),
and a Verlet list (cutoff + skin, reused across MD steps) that hands out float64 edge vectors.

vesin is used rather than torch-cluster: it ships wheels (torch-cluster has none for this torch and
its source build ran for over an hour), handles periodic cells of any shape with multiple images,
and was measured 50-100x faster than ase.neighborlist (docs/design.md).
"""

from __future__ import annotations

import numpy as np
import vesin

from mlffd.errors import MLFFDError

# Closer than this in a structure means overlapping atoms, not chemistry (the calculator, the
# dataset writer and training all refuse it with the same message).
MIN_DISTANCE = 0.5
# ase.data.chemical_symbols knows Z = 0 (the placeholder 'X') to 118.
MAX_ATOMIC_NUMBER = 118


def check_numbers(numbers) -> None:
    """Refuse atomic numbers that are no element (a lookup by symbol would fail far from here)."""
    numbers = np.asarray(numbers)
    bad = sorted({int(z) for z in numbers[(numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)]})
    if bad:
        raise MLFFDError(f"atomic number(s) {', '.join(map(str, bad))} are not elements (1-{MAX_ATOMIC_NUMBER}); "
                         "fix atoms.numbers")


def check_overlap(shortest: float) -> None:
    """Refuse a structure whose shortest interatomic distance (A) is below MIN_DISTANCE."""
    if shortest < MIN_DISTANCE:
        raise MLFFDError(f"atoms overlap: two atoms are {shortest:.3f} A apart (< {MIN_DISTANCE} A); "
                         "remove duplicated atoms or fix the structure")


def shortest_distance(positions, cell, pbc) -> float:
    """The shortest distance between two atoms (periodic images included); inf for fewer than two."""
    _, _, distances = NeighbourList(MIN_DISTANCE).compute_integer_shifts(positions, cell, pbc)
    return float(distances.min()) if len(distances) else float("inf")


def periodic_part(cell, pbc) -> np.ndarray:
    """The cell with its non-periodic vectors zeroed: those never enter a shift, and a NaN or inf
    there (a cluster with no meaningful cell) must not turn 0 * NaN into NaN edge vectors."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    return np.where(pbc[:, None], cell, 0.0)


def check_cell(cell, pbc) -> None:
    """Refuse a cell whose periodic vectors are zero or not independent (zero volume): vesin
    raises "the box matrix is not invertible" for those, or dies of SIGFPE for a degenerate slab.
    Vectors along non-periodic directions may be anything (a slab with a zero c vector is fine)."""
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    periodic = cell[pbc]
    if not len(periodic):
        return
    if not np.all(np.isfinite(cell)):
        raise MLFFDError("the cell has NaN or infinite values; set a finite cell (atoms.set_cell)")
    lengths = np.linalg.norm(periodic, axis=1)
    # volume (area, length) spanned by the periodic vectors, relative to that of orthogonal ones
    spanned = np.sqrt(max(np.linalg.det(periodic @ periodic.T), 0.0))
    if lengths.min() == 0.0 or spanned < 1e-6 * np.prod(lengths):
        names = "".join("abc"[k] for k in range(3) if pbc[k])
        raise MLFFDError(
            f"the periodic cell has zero volume: its cell vectors along the periodic directions ({names}) are "
            "zero or not independent; give the structure a proper cell (atoms.set_cell) or make those "
            "directions non-periodic (atoms.pbc)"
        )


def periodic_3d(atoms) -> bool:
    """Periodic in x, y and z with a full cell: a crystal (what stress, strains, the property suite,
    the bench and a LAMMPS deck need)."""
    return bool(np.all(atoms.pbc)) and atoms.cell.rank == 3


class NeighbourList:
    """Reusable full neighbour list; `compute` returns (edge_index [2,E], edge_shift [E,3])."""

    def __init__(self, cutoff: float):
        self.cutoff = float(cutoff)
        self._calculator = vesin.NeighborList(cutoff=self.cutoff, full_list=True)

    def compute(self, positions: np.ndarray, cell: np.ndarray, pbc) -> tuple[np.ndarray, np.ndarray]:
        edge_index, edge_shift, _ = self.compute_with_distances(positions, cell, pbc)
        return edge_index, edge_shift

    def graph(self, positions, cell, pbc) -> tuple[np.ndarray, np.ndarray]:
        """The frozen model's graph inputs: (edge_index [2,E] sorted by centre, edge_vec [E,3] float64,
        r_ij = x_j - x_i + shift formed in float64)."""
        positions = np.asarray(positions, dtype=np.float64)
        edge_index, edge_shift = self.compute(positions, cell, pbc)
        return edge_index, positions[edge_index[1]] - positions[edge_index[0]] + edge_shift

    def compute_with_distances(self, positions, cell, pbc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edge_index [2,E] sorted by centre, Cartesian edge_shift [E,3], distances [E])."""
        edge_index, shifts, distances = self.compute_integer_shifts(positions, cell, pbc)
        return edge_index, shifts @ periodic_part(cell, pbc), distances

    def compute_integer_shifts(self, positions, cell, pbc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(edge_index [2,E] sorted by centre, shifts [E,3] in cell vectors (float64), distances [E])."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
        if not np.all(np.isfinite(positions)):
            raise MLFFDError("positions contain NaN or infinite values")
        check_cell(cell, pbc)
        box = cell if pbc.any() else np.zeros((3, 3))
        i, j, shifts, distances = self._calculator.compute(
            points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd"
        )
        if np.any(i[1:] < i[:-1]):  # vesin usually returns pairs grouped by centre already
            order = np.argsort(i, kind="stable")
            i, j, shifts, distances = i[order], j[order], shifts[order], distances[order]
        edge_index = np.stack([i, j]).astype(np.int64)
        return edge_index, shifts.astype(np.float64), distances


class VerletList:
    """Pairs closer than cutoff + skin, rebuilt only when an atom has moved more than skin / 2
    since the last build (or the cell, the periodic directions or the number of atoms changed), so
    every pair closer than `cutoff` at the current positions is in it. `edges` returns the edge
    index and the edge vectors r_ij = x_j - x_i + shift, formed in float64 every call; pairs
    between cutoff and cutoff + skin are included (the model gives them exactly zero weight).
    The returned arrays are reused by the next call."""

    def __init__(self, cutoff: float, skin: float = 0.5):
        if skin < 0:
            raise MLFFDError(f"skin must be >= 0, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._list = NeighbourList(self.cutoff + self.skin)
        self._key = None

    def _stale(self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> bool:
        if self._key is None:
            return True
        ref_positions, ref_cell, ref_pbc = self._key
        if positions.shape != ref_positions.shape or not np.array_equal(cell, ref_cell) or not np.array_equal(pbc, ref_pbc):
            return True
        moved = positions - ref_positions
        return float(np.einsum("ij,ij->i", moved, moved).max(initial=0.0)) > (0.5 * self.skin) ** 2

    def edges(self, positions, cell, pbc) -> tuple[np.ndarray, np.ndarray]:
        """(edge_index [2,E] int64 sorted by centre, edge_vec [E,3] float64)."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
        cell = periodic_part(cell, pbc)
        if self._stale(positions, cell, pbc):
            edge_index, shifts, _ = self._list.compute_integer_shifts(positions, cell, pbc)
            self._edge_index = edge_index
            self._shift = shifts @ cell
            self._vec = np.empty_like(self._shift)
            self._tmp = np.empty_like(self._shift)
            self._key = (positions.copy(), cell, pbc)
            self.builds += 1
        np.take(positions, self._edge_index[1], axis=0, out=self._vec)
        np.take(positions, self._edge_index[0], axis=0, out=self._tmp)
        np.subtract(self._vec, self._tmp, out=self._vec)
        np.add(self._vec, self._shift, out=self._vec)
        return self._edge_index, self._vec


def neighbour_graph(positions, cell, pbc, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """The frozen model's graph inputs: (edge_index [2,E] sorted by centre, edge_vec [E,3] float64)."""
    return NeighbourList(cutoff).graph(positions, cell, pbc)
