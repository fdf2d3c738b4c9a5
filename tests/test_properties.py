"""The physics suite with ASE's EMT (cheap, analytic): known values, zero self-deviation, perturbed
students caught by the right rows, an unstable student reported, the teacher cache reused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from mlffd.validate.properties.crystal import load_crystal
from mlffd.validate.properties.suite import SuiteSettings

# Small cells keep EMT (pure Python) quick: widths of 2 x 3.5 A for phonons and defects.
SMALL = dict(cutoff=3.5, progress=False)
CU_INFO = {"path": "EMT", "elements": ["Cu"], "cutoff": 3.5, "num_interactions": 0, "dtype": "float64"}


class ScaledEMT(Calculator):
    """EMT with every energy scaled by `energy` and lengths by `length`: E'(x) = e E(x / s).
    So a0 scales by s; B, Cij by e / s^3; phonon frequencies by sqrt(e) / s; E_vac by e."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, energy: float = 1.0, length: float = 1.0):
        super().__init__()
        self.e, self.s = energy, length
        self.inner = EMT()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        shrunk = self.atoms.copy()
        shrunk.set_cell(self.atoms.cell / self.s, scale_atoms=True)
        shrunk.calc = self.inner
        energy = self.e * shrunk.get_potential_energy()
        self.results = {"energy": energy, "free_energy": energy, "forces": self.e * shrunk.get_forces() / self.s,
                        "stress": self.e * shrunk.get_stress() / self.s**3}


class CollapsingEMT(Calculator):
    """EMT plus a deep attractive well below 2.45 A (the Cu nearest-neighbour distance is 2.54 A):
    the crystal and its elastic response are EMT's, but MD pulls pairs together."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    R_WELL, DEPTH = 2.45, 40.0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = EMT()
        energy, forces, stress = a.get_potential_energy(), a.get_forces().copy(), a.get_stress(voigt=False)
        i, d, vec = neighbor_list("idD", a, self.R_WELL)  # vec = r_j - r_i; each pair listed twice
        x = 1.0 - d / self.R_WELL
        energy += 0.5 * np.sum(-self.DEPTH * x**2)
        dv_dr = 2.0 * self.DEPTH * x / self.R_WELL  # V = -D x^2 rises with r: attraction
        np.add.at(forces, i, (dv_dr / d)[:, None] * vec)
        stress = stress + 0.5 * np.einsum("p,pa,pb->ab", dv_dr / d, vec, vec) / a.get_volume()
        self.results = {"energy": energy, "free_energy": energy, "forces": forces,
                        "stress": stress.flat[[0, 4, 8, 5, 2, 1]]}


def _run(student, report_dir, cache, properties, **settings):
    from mlffd.validate.validation import validate_calculator

    opts = {**SMALL, **settings}
    return validate_calculator(student, CU_INFO, "emt", load_crystal("cu"), report_dir,
                               SuiteSettings(properties=properties, **opts), reference_cache=cache, verbose=False)


def _rows(report) -> dict:
    return {r["property"]: r for r in report["table"]}


ALL = ("eos", "elastic", "phonons", "vacancy", "surface", "md")
MD_SHORT = dict(temperatures=[900.0], equilibration_steps=20, production_steps=60, nve_ps=0.05)


@pytest.fixture(scope="module")
def self_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("emt_self")
    report = _run(EMT(), d / "report", d / "cache.h5", ALL, **MD_SHORT)
    return report, d


def test_emt_against_itself_deviates_by_zero(self_report):
    report, d = self_report
    rows = report["table"]
    assert len(rows) >= 15
    for row in rows:
        if row["deviation"] is not None:
            assert abs(row["deviation"]) < 1e-6, row  # rounding (acoustic modes near 0 THz amplify it)
        assert row["ok"] in (True, None), row
    props = report["properties"]
    for side in ("teacher", "student"):
        assert props["eos"][side]["a0_A"] > 3.5 and props["eos"][side]["B_GPa"] > 100
        assert {"C11_GPa", "C12_GPa", "C44_GPa"} <= set(props["elastic"][side])
        assert props["vacancy"][side]["E_vac_eV"] > 0.5
    assert props["phonons"]["max_abs_dev_THz"] < 1e-6 and props["phonons"]["mean_abs_dev_THz"] < 1e-6
    run = props["md"]["runs"]["900"]
    assert run["teacher"]["stable"] and run["student"]["stable"]
    assert run["teacher_frames"]["frames"] == 12 and run["rdf"]["deviation"] == 0.0
    assert abs(run["student"]["nve"]["drift_ev_per_atom_per_ps"]) < 1e-3
    on_disk = json.loads((d / "report" / "report.json").read_text())
    assert on_disk["table"] == rows
    for name in ("report.md", "eos.png", "phonons.png", "elastic.png", "md.png", "rdf.png", "msd.png"):
        assert (d / "report" / name).stat().st_size > 0, name
    text = (d / "report" / "report.md").read_text()
    assert "| a0 | A |" in text and "| C44 | GPa |" in text and "E_vac(Cu)" in text


def test_second_validation_costs_no_teacher_call(self_report, tmp_path):
    first, d = self_report
    assert first["teacher_calls"]["calls"] > 100
    again = _run(EMT(), tmp_path / "again", d / "cache.h5", ALL, **MD_SHORT)
    assert again["teacher_calls"]["calls"] == 0
    assert again["teacher_calls"]["cache_hits"] >= first["teacher_calls"]["calls"]
    assert again["table"] == first["table"]


def test_emt_values_match_known_numbers():
    """EMT's own numbers: Ag against ASE's EOS tutorial (V0 16.781 A^3, B 100.14 GPa); Cu against
    the experimental values its parameters were fitted to (a0 3.61 A, B 137 GPa; vacancy 1.28 eV;
    X-point TA 5.1 and LA 7.3 THz), at EMT's accuracy; and two independent routes to B."""
    from ase.build import bulk

    from mlffd.validate.properties import defects, elasticity, phonons
    from mlffd.validate.properties.crystal import Crystal, equilibrium

    ag = bulk("Ag", "fcc", a=4.07, cubic=True)
    crystal = Crystal("ag", ag, bulk("Ag", "fcc", a=4.07), True, "test")
    eos = elasticity.equation_of_state(equilibrium(crystal, EMT()), EMT(), crystal)
    assert eos["v0_A3_per_atom"] == pytest.approx(16.781, rel=2e-3)
    assert eos["B_GPa"] == pytest.approx(100.14, rel=0.02)

    cu = load_crystal("cu")
    eq = equilibrium(cu, EMT())
    eos = elasticity.equation_of_state(eq, EMT(), cu)
    elastic = elasticity.elastic_constants(eq, EMT(), cu)
    assert eos["a0_A"] == pytest.approx(3.61, rel=0.01)
    assert eos["B_GPa"] == pytest.approx(137.0, rel=0.05)
    assert eos["Bprime"] == pytest.approx(4.5, abs=1.0)
    assert (elastic["C11_GPa"] + 2 * elastic["C12_GPa"]) / 3 == pytest.approx(eos["B_GPa"], rel=5e-3)
    assert elastic["C11_GPa"] > elastic["C44_GPa"] > 0 and elastic["mechanically_stable"]
    assert defects.vacancies(eq, EMT(), ["Cu"], 7.0)["E_vac_eV"] == pytest.approx(1.28, rel=0.1)

    path = phonons.band_path(cu)
    ph = phonons.phonons(eq, EMT(), path, 10.0)
    bands = np.asarray(ph["bands_THz"])
    x, special, labels = path.get_linear_kpoint_axis()
    gamma, x_point = bands[0], bands[int(np.argmin(np.abs(x - special[labels.index("X")])))]
    assert np.abs(gamma).max() < 0.05  # acoustic modes vanish at Gamma
    assert x_point[1] - x_point[0] < 0.01  # two degenerate transverse branches at X
    assert x_point[0] == pytest.approx(5.1, rel=0.15) and x_point[2] == pytest.approx(7.3, rel=0.15)
    assert not ph["imaginary"] and ph["max_THz"] == pytest.approx(x_point[2], rel=0.02)


def test_phonons_at_the_supercells_qpoints_do_not_depend_on_its_size():
    """EMT Cu reaches past a 2x2x2 supercell: its bands along the path come out wrong (interpolated
    from truncated force constants), its frequencies at the q-points the supercell resolves do not."""
    from mlffd.validate.properties import phonons
    from mlffd.validate.properties.crystal import equilibrium

    cu = load_crystal("cu")
    eq = equilibrium(cu, EMT())
    path = phonons.band_path(cu)
    small, large = (phonons.phonons(eq, EMT(), path, width) for width in (4.0, 8.0))
    assert (small["supercell"], large["supercell"]) == ([2, 2, 2], [4, 4, 4])
    fine = phonons.commensurate_qpoints(large["supercell"])
    shared = [int(np.flatnonzero(np.all(np.isclose(fine, q), axis=1))[0])
              for q in phonons.commensurate_qpoints(small["supercell"])]
    exact = np.asarray(large["commensurate_THz"])[shared]
    assert np.abs(np.asarray(small["commensurate_THz"]) - exact).max() < 1e-3
    assert np.abs(np.asarray(small["bands_THz"]) - np.asarray(large["bands_THz"])).max() > 1.0


def _failing(report) -> set:
    return {r["property"] for r in report["table"] if r["ok"] is False}


def test_perturbed_students_fail_the_right_rows(self_report, tmp_path):
    _, d = self_report
    props = ("eos", "elastic", "phonons", "vacancy")
    stiffer = _run(ScaledEMT(energy=1.05), tmp_path / "stiff", d / "cache.h5", props)
    assert stiffer["teacher_calls"]["calls"] == 0  # the teacher side comes from the cache
    rows = _rows(stiffer)
    assert rows["B (EOS)"]["deviation"] == pytest.approx(5.0, abs=0.05)
    assert rows["C44"]["deviation"] == pytest.approx(5.0, abs=0.05)
    assert rows["E_vac(Cu)"]["deviation"] == pytest.approx(0.05 * rows["E_vac(Cu)"]["teacher"], rel=0.02)
    assert _failing(stiffer) == {"B (EOS)", "C11", "C12", "C44", "B (VRH)", "G (VRH)", "E_vac(Cu)"}
    assert rows["a0"]["ok"] and rows["phonons: max abs deviation"]["ok"]

    larger = _run(ScaledEMT(length=1.01), tmp_path / "large", d / "cache.h5", props)
    rows = _rows(larger)
    assert rows["a0"]["deviation"] == pytest.approx(1.0, abs=0.01)
    assert rows["B (EOS)"]["deviation"] == pytest.approx(100 * (1.01**-3 - 1), abs=0.05)
    assert {"a0", "B (EOS)", "C11", "C12", "C44"} <= _failing(larger)
    assert rows["E_vac(Cu)"]["ok"] and rows["E_vac(Cu)"]["deviation"] == pytest.approx(0.0, abs=1e-3)


def test_collapsing_student_is_reported_unstable(self_report, tmp_path):
    _, d = self_report
    report = _run(CollapsingEMT(), tmp_path / "collapse", d / "cache.h5", ("md",), temperatures=[1500.0],
                  equilibration_steps=40, production_steps=100, nve_ps=0.2)
    run = report["properties"]["md"]["runs"]["1500"]
    assert run["teacher"]["stable"] is True
    assert run["student"]["stable"] is False
    assert "pair at" in run["student"]["stopped"] or "temperature" in run["student"]["stopped"]  # collapse or runaway
    row = _rows(report)["MD 1500 K: stable"]
    assert row["ok"] is False and "student:" in row["note"]


def test_rejudge_recomputes_the_table_from_the_stored_measurements(self_report, tmp_path):
    """A report judged under other rules (here: a tampered table) gets the current table back from
    its own measurements, without a model or a teacher."""
    import json
    import shutil

    from mlffd.errors import MLFFDError
    from mlffd.validate import rejudge

    report, d = self_report
    folder = tmp_path / "report"
    shutil.copytree(d / "report", folder)
    stored = json.loads((folder / "report.json").read_text())
    stored["table"] = [{"property": "stale", "ok": False}]
    (folder / "report.json").write_text(json.dumps(stored))
    again = rejudge(folder)
    assert again["table"] == report["table"]
    assert json.loads((folder / "report.json").read_text())["table"] == report["table"]
    assert "stale" not in (folder / "report.md").read_text()
    with pytest.raises(MLFFDError, match="no validation report"):
        rejudge(tmp_path / "nothing")


def test_student_in_the_wrong_thermal_state_is_not_called_stable():
    """A student that runs to the end but sits below the teacher's potential energy (a spurious
    low-energy region) or heats in NVE fails the stability row, with the reason in its note."""
    from mlffd.validate.properties.suite import _md_rows

    def side(excess_mev, t_prod=2000.0, t_nve=2000.0):
        return {"stable": True, "stopped": None, "simulated_ps": 1.0, "excess_epot_ev_per_atom": excess_mev / 1000,
                "mean_temperature_k": t_prod, "mean_nve_temperature_k": t_nve, "nve": {}}

    def rows(student):
        return {r["property"]: r for r in _md_rows("2000", {"teacher": side(260.0), "student": student})}

    same = rows(side(250.0))
    assert same["MD 2000 K: stable"]["ok"] is True
    assert same["MD 2000 K: potential energy above the crystal"]["deviation"] == pytest.approx(-100 / 26)
    low = rows(side(150.0))
    assert low["MD 2000 K: stable"]["ok"] is False and low["MD 2000 K: stable"]["student"].startswith("no")
    assert "potential energy above the crystal 150.0 meV/atom" in low["MD 2000 K: stable"]["note"]
    assert low["MD 2000 K: potential energy above the crystal"]["ok"] is False
    hot = rows(side(250.0, t_nve=2900.0))
    assert hot["MD 2000 K: stable"]["ok"] is False and "NVE temperature 2900 K" in hot["MD 2000 K: stable"]["note"]
    # NVE cooling is a melt taking up latent heat, not a runaway: still stable, and said in the note
    melted = rows(side(250.0, t_prod=1777.0, t_nve=1126.0))["MD 2000 K: stable"]
    assert melted["ok"] is True and "melted or changed phase" in melted["note"]
    assert "note" not in same["MD 2000 K: stable"]


def test_a_new_property_is_its_record_and_one_entry(tmp_path, monkeypatch):
    """A property the suite does not know, registered as one `Property` record: computed by the same
    code for both sides on their own relaxed crystals, and its rows in the table."""
    from mlffd.validate.properties import suite
    from mlffd.validate.properties.protocol import Property, relative_row

    def volume_per_atom(eq, calc, ctx):
        assert ctx.crystal.name == "cu" and ctx.width == 7.0
        return {"v_A3": eq.unit.get_volume() / len(eq.unit)}

    toy = Property("volume", volume_per_atom,
                   lambda r: [relative_row("V per atom", "A^3", r["teacher"]["v_A3"], r["student"]["v_A3"], "v0")])
    monkeypatch.setitem(suite.STATIC_PROPERTIES, "volume", toy)
    report = _run(ScaledEMT(length=1.01), tmp_path / "r", tmp_path / "c.h5", ("volume",))
    assert list(report["properties"]) == ["volume"]
    (row,) = report["table"]
    assert row["property"] == "V per atom" and row["goal"] == 0.2 and row["ok"] is False
    # each side on its own equilibrium: lengths 1 % longer, volumes 3.03 % larger
    assert row["deviation"] == pytest.approx(100 * (1.01**3 - 1), abs=0.01)
