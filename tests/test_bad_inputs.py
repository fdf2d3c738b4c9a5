"""Bad inputs across the CLI, the dataset, the ASE calculator and LAMMPS decks (issue 14).

Each case asserts the one-line message that names the problem and the fix, and that nothing on
disk was lost or changed: every file of the shared workspace (datasets, models, a training run,
configs) keeps its bytes, and no file appears or disappears. The CLI runs in-process
(`mlffd.cli.main`, exit code 2 and `mlffd <cmd>: error: ...`), the Python API raises
MLFFDError, LAMMPS stops with one `ERROR` line from pair_style mlffd (one `lmp` per deck).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlffd.calculator import MLFFDCalculator
from mlffd.cli import main
from mlffd.data.dataset import open_dataset
from mlffd.data.writer import DatasetWriter
from mlffd.errors import MLFFDError
from mlffd.export.contract import FORMAT_VERSION


def snapshot(root: Path) -> dict:
    """Every path under root with the sha256 of its bytes ('dir' for folders)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def copper(k: int, repeat=(2, 1, 1)) -> Atoms:
    atoms = bulk("Cu", "fcc", 3.6, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=k)
    atoms.calc = EMT()
    atoms.get_potential_energy(), atoms.get_forces()
    return atoms


def write_dataset(path: Path, frames, teacher=("emt", "ase-emt"), prefix="cu") -> None:
    with DatasetWriter(path, *teacher) as w:
        for k, atoms in enumerate(frames):
            w.append(atoms, sampler="rattle", temperature=300.0, seed=k, key=f"{prefix}/{k}")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, demo_model_factory):
    """The workspace every case runs against (and must leave exactly as it was)."""
    import ase.io

    from mlffd.training.config import TrainConfig
    from mlffd.training.trainer import Trainer

    root = tmp_path_factory.mktemp("workspace")
    write_dataset(root / "data.h5", [copper(k) for k in range(6)])
    write_dataset(root / "other.h5", [copper(10 + k) for k in range(4)])
    write_dataset(root / "one.h5", [copper(20)])
    shutil.copy(demo_model_factory(("Cu",)), root / "model.pt")
    shutil.copy(demo_model_factory(("Si",), num_interactions=1), root / "si.pt")
    cfg = TrainConfig.from_dict({"preset": "tiny", "epochs": 1, "cutoff": 4.0})
    Trainer(str(root / "data.h5"), str(root / "run"), cfg).run(quiet=True)

    raw = (root / "data.h5").read_bytes()
    (root / "truncated.h5").write_bytes(raw[: len(raw) // 3])
    with h5py.File(root / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    shutil.copy(root / "data.h5", root / "schema99.h5")
    with h5py.File(root / "schema99.h5", "a") as f:
        f.attrs["schema_version"] = 99
    shutil.copy(root / "data.h5", root / "damaged.h5")
    with h5py.File(root / "damaged.h5", "a") as f:
        del f["frames"]

    damage = {  # hand-damaged copies of data.h5 (issue 30)
        "forces2.h5": lambda f: (f["atoms"].__delitem__("forces"), f["atoms"].create_dataset("forces", (48, 2))),
        "short_forces.h5": lambda f: f["atoms/forces"].resize((47, 3)),
        "big_frame.h5": lambda f: f["frames/n_atoms"].__setitem__(5, 12),
        "empty_frame.h5": lambda f: (f["frames/n_atoms"].__setitem__(0, 0), f["committed"].__setitem__(1, 40),
                                     f["frames/offset"].__setitem__(slice(1, 6), np.arange(0, 40, 8))),
    }
    for name, change in damage.items():
        shutil.copy(root / "data.h5", root / name)
        with h5py.File(root / name, "a") as f:
            change(f)

    (root / "text.txt").write_text("this is not a model or a dataset\n")
    (root / "adir").mkdir()
    torch.save({"weights": torch.zeros(2)}, root / "ckpt.pt")

    class Plain(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    torch.jit.save(torch.jit.script(Plain()), str(root / "plain.pt"))
    files = {"mlffd/metadata.json": "", "mlffd/metadata.txt": ""}
    module = torch.jit.load(str(root / "model.pt"), _extra_files=files)
    files = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in files.items()}
    now, newer = FORMAT_VERSION, FORMAT_VERSION + 1
    files["mlffd/metadata.json"] = files["mlffd/metadata.json"].replace(f'"format_version": {now}',
                                                                        f'"format_version": {newer}')
    files["mlffd/metadata.txt"] = files["mlffd/metadata.txt"].replace(f"format_version {now}", f"format_version {newer}")
    torch.jit.save(module, str(root / "newer.pt"), _extra_files=files)

    (root / "bad_key.yaml").write_text("preset: tiny\nepochs: 1\nlearning_rate: 0.1\n")
    (root / "list.yaml").write_text("- preset\n- tiny\n")
    labelled = copper(30)
    unlabelled = copper(31)
    unlabelled.calc = None
    flat = copper(32)
    flat.calc = SinglePointCalculator(flat, energy=-1.0, forces=np.zeros((len(flat), 3)))
    flat.set_cell([[7.2, 0, 0], [7.2, 0, 0], [0, 0, 3.6]])
    ase.io.write(root / "good.extxyz", [labelled])
    ase.io.write(root / "unlabelled.extxyz", [labelled, unlabelled])
    ase.io.write(root / "flat_cell.extxyz", [labelled, flat])
    kbar = copper(33)
    kbar.calc.results["stress"] = kbar.calc.results["stress"] * 0 + [52.0, 50.0, 51.0, 1.0, 2.0, 3.0]
    ase.io.write(root / "kbar.extxyz", [labelled, kbar])
    virial = copper(34)
    virial.info["virial"] = np.eye(3)  # and a stress from EMT that is not -virial / V
    ase.io.write(root / "virial_stress.extxyz", [labelled, virial])
    overlap = copper(35)
    overlap.positions[1] = overlap.positions[0] + [0.1, 0, 0]
    overlap.calc = SinglePointCalculator(overlap, energy=1.0, forces=np.zeros((len(overlap), 3)))
    ase.io.write(root / "overlap.extxyz", [labelled, overlap])
    empty = Atoms()
    empty.calc = SinglePointCalculator(empty, energy=0.0, forces=np.zeros((0, 3)))
    ase.io.write(root / "zero_atoms.extxyz", [labelled, copper(36), empty, copper(37)])
    twins = [copper(38), copper(39), copper(40)]
    twins[1].info["key"] = twins[2].info["key"] = "same"
    ase.io.write(root / "same_key.extxyz", twins)
    seeded = copper(41)
    seeded.info["seed"] = "abc"
    ase.io.write(root / "bad_seed.extxyz", [labelled, seeded])
    seeded.info["seed"] = 1.5
    ase.io.write(root / "half_seed.extxyz", [seeded])
    write_dataset(root / "overlap.h5", [copper(k) for k in range(3)])
    with h5py.File(root / "overlap.h5", "a") as f:  # written before the writer refused overlaps
        f["atoms/positions"][1] = f["atoms/positions"][0] + [0.1, 0, 0]
    ase.io.write(root / "flat_cell.xyz", Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.2, 1.2]],
                                               cell=[[5.43, 0, 0], [5.43, 0, 0], [0, 0, 5.43]], pbc=True))
    return SimpleNamespace(root=root, before=snapshot(root))


@pytest.fixture
def untouched(ws):
    """Fails the case if the workspace changed in any way."""
    yield ws
    assert snapshot(ws.root) == ws.before, "a refused input changed the workspace"


# ------------------------------------------------------------------ CLI

AS_EMT = ["--teacher-name", "emt", "--teacher-version", "ase-emt"]  # the workspace's teacher: refusals are the file's
# (argv with {w} for the workspace, substrings the one error line must hold)
CLI_CASES = {
    "info missing file": (["info", "{w}/missing.h5"], ["missing.h5 does not exist"]),
    "info directory": (["info", "{w}/adir"], ["is a directory; give a dataset (.h5) or a model (.pt)"]),
    "info text file": (["info", "{w}/text.txt"], ["neither an mlffd dataset (HDF5) nor an mlffd model"]),
    "info foreign HDF5": (["info", "{w}/foreign.h5"], ["not an mlffd dataset (no format='mlffd-dataset')"]),
    "info truncated HDF5": (["info", "{w}/truncated.h5"], ["is truncated", "copy it again or regenerate it"]),
    "info plain TorchScript": (["info", "{w}/plain.pt"], ["not an mlffd model", "mlffd export"]),
    "info torch.save file": (["info", "{w}/ckpt.pt"], ["PyTorch checkpoint (torch.save)", "mlffd export RUN_DIR"]),
    "summary other schema": (["data", "summary", "{w}/schema99.h5"], ["schema version 99; this mlffd reads version 1"]),
    "summary damaged": (["data", "summary", "{w}/damaged.h5"], ["damaged mlffd dataset: missing /frames"]),
    "info forces [A,2]": (["info", "{w}/forces2.h5"], ["damaged mlffd dataset: /atoms/forces has shape (48, 2)",
                                                       "regenerate it"]),
    "info fewer force rows": (["info", "{w}/short_forces.h5"], ["/atoms/forces has shape (47, 3)", "(48, 3)"]),
    "info n_atoms past the rows": (["info", "{w}/big_frame.h5"], ["n_atoms and offsets (52 atoms) do not match the 48"]),
    "info zero-atom frame": (["info", "{w}/empty_frame.h5"], ["damaged mlffd dataset: frame 0 has 0 atoms"]),
    "train n_atoms past the rows": (["train", "{w}/big_frame.h5", "--out", "{w}/new_run"], ["damaged mlffd dataset"]),
    "train zero-atom frame": (["train", "{w}/empty_frame.h5", "--out", "{w}/new_run"],
                              ["frame 0 has 0 atoms", "regenerate it"]),
    "data export over its input": (["data", "export", "{w}/data.h5", "{w}/data.h5"],
                                   ["refusing to overwrite it with extended XYZ", "choose another output file"]),
    "data export over a dataset": (["data", "export", "{w}/data.h5", "{w}/other.h5"], ["is an HDF5 dataset; refusing"]),
    "data export to missing dir": (["data", "export", "{w}/data.h5", "{w}/nodir/out.extxyz"],
                                   ["cannot write", "No such file or directory"]),
    "data import unknown format": (["data", "import", "{w}/text.txt", "{w}/data.h5"],
                                   ["does not know the file type 'txt'", "extended XYZ"]),
    "data import missing file": (["data", "import", "{w}/missing.extxyz", "{w}/data.h5"], ["file not found"]),
    "data import unlabelled": (["data", "import", "{w}/unlabelled.extxyz", "{w}/data.h5"],
                               ["structure 1 has no energy and forces"]),
    "data import zero-volume cell": (["data", "import", "{w}/flat_cell.extxyz", "{w}/data.h5"],
                                     ["structure 1: the periodic cell has zero volume", "atoms.set_cell"]),
    "data import other teacher": (["data", "import", "{w}/good.extxyz", "{w}/data.h5", "--teacher-name", "x"],
                                  ["holds labels from teacher 'emt', not 'x'; use another output file"]),
    "data import stress in kBar": (["data", "import", "{w}/kbar.extxyz", "{w}/data.h5", *AS_EMT],
                                   ["structure 1: stress of 52 eV/A^3", "is it in kBar or GPa?", "kBar * 6.2415e-4"]),
    "data import virial and stress disagree": (["data", "import", "{w}/virial_stress.extxyz", "{w}/data.h5", *AS_EMT],
                                               ["structure 1: its stress and its virial disagree"]),
    "data import overlapping atoms": (["data", "import", "{w}/overlap.extxyz", "{w}/data.h5", *AS_EMT],
                                      ["structure 1: atoms overlap: two atoms are 0.100 A apart"]),
    "data import zero-atom frame": (["data", "import", "{w}/zero_atoms.extxyz", "{w}/data.h5", *AS_EMT],
                                    ["zero_atoms.extxyz: structure 2 has no atoms"]),
    "data import repeated key": (["data", "import", "{w}/same_key.extxyz", "{w}/data.h5", *AS_EMT],
                                 ["structures 1 and 2 have the same key 'same'"]),
    "data import text seed": (["data", "import", "{w}/bad_seed.extxyz", "{w}/new.h5"],
                              ["structure 1: info seed='abc' is not an integer; fix or remove it"]),
    "data import fractional seed": (["data", "import", "{w}/half_seed.extxyz", "{w}/new.h5"],
                                    ["structure 0: info seed='1.5' is not an integer"]),
    "train overlapping atoms": (["train", "{w}/overlap.h5", "--out", "{w}/new_run"],
                                ["frame 'cu/0': atoms overlap: two atoms are 0.100 A apart"]),
    "data import into a model": (["data", "import", "{w}/good.extxyz", "{w}/model.pt"], ["not an HDF5 file"]),
    "train missing dataset": (["train", "{w}/missing.h5", "--out", "{w}/new_run"], ["dataset not found"]),
    "train foreign dataset": (["train", "{w}/foreign.h5", "--out", "{w}/new_run"], ["not an mlffd dataset"]),
    "train truncated dataset": (["train", "{w}/truncated.h5", "--out", "{w}/new_run"], ["is truncated"]),
    "train one frame": (["train", "{w}/one.h5", "--out", "{w}/new_run"], ["has 1 frame(s); training needs at least 2"]),
    "train out is a file": (["train", "{w}/data.h5", "--out", "{w}/text.txt"], ["exists and is not a directory"]),
    "train zero epochs": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--epochs", "0"], ["epochs must be at least 1"]),
    "train negative budget": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--time-budget", "-1"],
                              ["time budget must be more than 0 minutes"]),
    "train epochs not a number": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--epochs", "ten"],
                                  ["argument --epochs: invalid int value: 'ten'", "mlffd train --help"]),
    "train unknown config key": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--config", "{w}/bad_key.yaml"],
                                 ["unknown config key 'learning_rate'"]),
    "train config not a mapping": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--config", "{w}/list.yaml"],
                                   ["must hold a mapping of settings"]),
    "train config missing": (["train", "{w}/data.h5", "--out", "{w}/new_run", "--config", "{w}/missing.yaml"],
                             ["config file", "does not exist"]),
    "train resume on other data": (["train", "{w}/other.h5", "--out", "{w}/run", "--preset", "tiny", "--epochs", "1"],
                                   ["holds a run on a different dataset; train into another run folder"]),
    "train resume other settings": (["train", "{w}/data.h5", "--out", "{w}/run", "--preset", "small", "--epochs", "1"],
                                    ["was started with other settings"]),
    "train into a read-only folder": (["train", "{w}/data.h5", "--out", "/sys/mlffd_run", "--epochs", "1"],
                                      ["cannot write the run folder /sys/mlffd_run", "choose a writable --out"]),
    "export missing run": (["export", "{w}/missing_run", "-o", "{w}/new.pt"], ["no checkpoint at"]),
    "export text as checkpoint": (["export", "{w}/text.txt", "-o", "{w}/new.pt"],
                                  ["not a readable checkpoint", "give the run folder of `mlffd train`"]),
    "export a frozen model": (["export", "{w}/model.pt", "-o", "{w}/new.pt"], ["is not an mlffd training checkpoint"]),
    "export over the dataset": (["export", "{w}/run", "-o", "{w}/data.h5"],
                                ["exists and is not an mlffd model", "refusing to overwrite it: choose another -o"]),
    "export over the checkpoint": (["export", "{w}/run", "-o", "{w}/run/best.pt"], ["refusing to overwrite it"]),
    "export to a directory": (["export", "{w}/run", "-o", "{w}/adir"], ["is a directory; give a file name"]),
    "export without -o over another run's model": (["export", "{w}/run"],
                                                   ["model.pt holds a model of another run (teacher 'random'",
                                                    "give -o model.pt to replace it, or another -o"]),
    "export unknown device": (["export", "{w}/run", "-o", "{w}/new.pt", "--device", "tpu"],
                              ["unknown device 'tpu'; use cpu, cuda or cuda:N"]),
    "export into a read-only folder": (["export", "{w}/run", "-o", "/sys/mlffd.pt"],
                                       ["cannot write /sys/mlffd.pt: Permission denied; choose a writable -o"]),
    "data export to stdout": (["data", "export", "{w}/data.h5", "-"],
                              ["writes extended XYZ, not to '-'", "ending in .extxyz"]),
    "data export to an .h5 name": (["data", "export", "{w}/data.h5", "{w}/copy.h5"],
                                   ["writes extended XYZ, not to", "copy.h5", "copy the .h5 file"]),
    "export bad dtype": (["export", "{w}/run", "--dtype", "float16"], ["argument --dtype: invalid choice: 'float16'"]),
    "validate plain TorchScript": (["validate", "{w}/plain.pt", "--teacher", "emt", "--data", "{w}/data.h5",
                                    "--report", "{w}/rep"], ["not an mlffd model"]),
    "validate unknown teacher": (["validate", "{w}/model.pt", "--teacher", "nosuch", "--data", "{w}/data.h5",
                                  "--report", "{w}/rep"], ["unknown teacher 'nosuch'; known: sevennet-0"]),
    "validate wrong elements": (["validate", "{w}/si.pt", "--teacher", "mlffd:{w}/si.pt", "--data", "{w}/data.h5",
                                 "--report", "{w}/rep"], ["element(s) Cu that the model does not know"]),
    "validate report is a file": (["validate", "{w}/model.pt", "--teacher", "emt", "--data", "{w}/data.h5",
                                   "--report", "{w}/text.txt"], ["exists and is not a directory"]),
    "validate negative steps": (["validate", "{w}/model.pt", "--teacher", "emt", "--data", "{w}/data.h5",
                                 "--report", "{w}/rep", "--md-steps", "-5"], ["--md-steps must be >= 1, got -5"]),
    "validate zero frames": (["validate", "{w}/model.pt", "--teacher", "emt", "--data", "{w}/data.h5",
                              "--report", "{w}/rep", "--max-frames", "0"], ["--max-frames must be at least 1"]),
    "validate zero budget": (["validate", "{w}/model.pt", "--teacher", "emt", "--report", "{w}/rep",
                              "--budget", "0"], ["--budget must be > 0 minutes"]),
    "validate missing reference": (["validate", "{w}/model.pt", "--teacher", "mlffd:{w}/missing.pt", "--data",
                                    "{w}/data.h5", "--report", "{w}/rep"], ["missing.pt does not exist"]),
    "bench bad sizes": (["bench", "{w}/model.pt", "--sizes", "abc", "--out", "{w}/b"],
                        ["--sizes must be comma-separated integers"]),
    "bench unknown engine": (["bench", "{w}/model.pt", "--engines", "gromacs", "--out", "{w}/b"],
                             ["unknown engine(s) gromacs; choose from ase, lammps"]),
    "bench out is a file": (["bench", "{w}/model.pt", "--out", "{w}/text.txt", "--sizes", "8", "--engines", "ase"],
                            ["exists and is not a directory"]),
    "bench plain TorchScript": (["bench", "{w}/plain.pt", "--out", "{w}/b"], ["not an mlffd model"]),
    "generate unknown system": (["generate", "--system", "nosuch", "--frames", "2", "--out", "{w}/g.h5"],
                                ["unknown system 'nosuch': not a built-in (si, cu"]),
    "generate zero frames": (["generate", "--system", "si", "--frames", "0", "--out", "{w}/g.h5"],
                             ["--frames must be at least 1"]),
    "generate into foreign HDF5": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/foreign.h5"],
                                   ["not an mlffd dataset"]),
    "generate other teacher's file": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/data.h5"],
                                      ["holds labels from teacher 'emt', not 'sevennet-0'; use another output file"]),
    "generate into a model": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/model.pt"],
                              ["not an HDF5 file"]),
    "generate unknown teacher": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/g.h5", "--teacher", "x"],
                                 ["unknown teacher 'x'"]),
    "generate bad temperatures": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/g.h5",
                                   "--temperatures", "hot"], ["--temperatures must be comma-separated numbers"]),
    "generate md fraction": (["generate", "--system", "si", "--frames", "2", "--out", "{w}/g.h5", "--md-fraction", "1.5"],
                             ["md fraction must be between 0 and 1"]),
    "generate unreadable structure": (["generate", "--system", "{w}/text.txt", "--frames", "2", "--out", "{w}/g.h5"],
                                      ["does not know the file type 'txt'"]),
    "generate zero-volume structure": (["generate", "--system", "{w}/flat_cell.xyz", "--frames", "2", "--out",
                                        "{w}/g.h5"], ["the periodic cell has zero volume"]),
    "distill out is a file": (["distill", "--out", "{w}/text.txt"], ["exists and is not a directory"]),
    "lammps build bad source": (["lammps", "build", "--lammps-src", "{w}/adir"], ["is not a LAMMPS source tree"]),
    "ops unknown action": (["ops", "frobnicate"], ["argument action: invalid choice: 'frobnicate'"]),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli(case, untouched, capsys, monkeypatch):
    monkeypatch.chdir(untouched.root)  # anything written to the working folder would show too
    argv, expected = CLI_CASES[case]
    argv = [a.format(w=untouched.root) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, (rc, lines)
    command = "mlffd data" if argv[0] == "data" else f"mlffd {argv[0]}"
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


# ------------------------------------------------------------------ dataset API


def _nan_forces(atoms):
    atoms.calc.results["forces"][0, 0] = np.nan
    return atoms


def _flat_cell(atoms):
    atoms.set_cell([[7.2, 0, 0], [7.2, 0, 0], [0, 0, 3.6]])
    return atoms


DATASET_CASES = {
    "open a directory": (lambda w: open_dataset(w / "adir"), "is a directory, not an HDF5 file"),
    "open foreign HDF5": (lambda w: open_dataset(w / "foreign.h5"), "not an mlffd dataset"),
    "open truncated": (lambda w: open_dataset(w / "truncated.h5"), "is truncated"),
    "open other schema": (lambda w: open_dataset(w / "schema99.h5"), "schema version 99"),
    "open a model": (lambda w: open_dataset(w / "model.pt"), "not an HDF5 file"),
    "writer other teacher": (lambda w: DatasetWriter(w / "data.h5", "sevennet-0", "v").open(),
                             "holds labels from teacher 'emt', not 'sevennet-0'"),
    "writer missing folder": (lambda w: DatasetWriter(w / "nodir" / "x.h5", "emt", "ase-emt").open(),
                              "output directory does not exist"),
    "append NaN forces": (lambda w: write_dataset(w / "data.h5", [_nan_forces(copper(40))], prefix="new"),
                          "non-finite labels for frame 'new/0'"),
    "append zero-volume cell": (lambda w: write_dataset(w / "data.h5", [_flat_cell(copper(41))], prefix="new"),
                                "frame 'new/0': the periodic cell has zero volume"),
    "append existing key": (lambda w: write_dataset(w / "data.h5", [copper(42)]), "frame key 'cu/0' is already in"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_dataset(case, untouched):
    call, expected = DATASET_CASES[case]
    with pytest.raises(MLFFDError) as info:
        call(untouched.root)
    message = str(info.value)
    assert expected in message and "\n" not in message, message


def test_train_into_a_folder_in_use(untouched, capsys):
    """A second `mlffd train` into a run folder that another one holds is refused (both used to
    exit 0, leaving one run's model beside both runs' metrics rows)."""
    from mlffd.training.runfolder import run_folder

    with run_folder(untouched.root / "run"):  # what the first training holds while it runs
        rc = main(["train", str(untouched.root / "data.h5"), "--out", str(untouched.root / "run"),
                   "--preset", "tiny", "--epochs", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("mlffd train: error: ") and "\n" not in err, err
    assert "is in use by another training" in err and "choose another --out" in err, err


def test_metrics_json_is_strict(tmp_path, capsys):
    """Teacher forces all zero make r2 and rel_mae undefined: null in metrics.json, not NaN/Infinity."""
    import json

    frames = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", 3.6 + 0.01 * k, cubic=True)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - 0.1 * k, forces=np.zeros((4, 3)))
        frames.append(atoms)
    with DatasetWriter(tmp_path / "zero.h5", "emt", "ase-emt") as w:
        for k, atoms in enumerate(frames):
            w.append(atoms, sampler="rattle", temperature=0.0, seed=k, key=f"z/{k}")
    assert main(["train", str(tmp_path / "zero.h5"), "--out", str(tmp_path / "run"), "--preset", "tiny",
                 "--epochs", "1", "--quiet"]) == 0
    text = (tmp_path / "run" / "metrics.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert summary["validation"]["r2"] is None
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} printed"))


@pytest.mark.parametrize("command", ["data export", "export"])
def test_killed_export_temp_is_removed(command, untouched, tmp_path):
    """A temporary file left by an export killed outright goes at the next export of that target."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / ("frames.extxyz" if command == "data export" else "model.pt")
    stale, alive = tmp_path / f".{out.name}.{dead.pid}.tmp", tmp_path / f".{out.name}.1.tmp"  # pid 1 runs
    stale.write_text("half")
    alive.write_text("busy")
    source = untouched.root / ("data.h5" if command == "data export" else "run")
    argv = ["data", "export", str(source), str(out)] if command == "data export" else ["export", str(source), "-o",
                                                                                        str(out), "--no-ops"]
    assert main(argv) == 0
    assert out.exists() and not stale.exists() and alive.exists()


def test_info_into_a_closed_pipe(untouched):
    """`mlffd info model.pt | head -3`: the reader leaves early; no BrokenPipeError traceback."""
    import sys

    proc = subprocess.run(f"'{sys.executable}' -m mlffd.cli info '{untouched.root / 'model.pt'}' | true",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


@pytest.mark.lammps
@pytest.mark.parametrize("name", ["my model.pt", "modèle.pt"])
def test_bench_lammps_model_path(name, untouched, tmp_path, plugin):
    """A model path with a space or non-ASCII letters reaches pair_coeff as one word (it used to
    read as 3 elements, or end in a UnicodeDecodeError)."""
    import json

    shutil.copy(untouched.root / "model.pt", tmp_path / name)
    assert main(["bench", str(tmp_path / name), "--engines", "lammps", "--sizes", "8", "--steps", "2",
                 "--repeats", "1", "--warmup", "1", "--long-steps", "0", "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    student = [r for r in rows if r["model"] == "student"]
    assert student and all(r.get("ms_per_step") for r in student), student


def test_import_same_name_other_folder(tmp_path):
    """Two files of one name from two folders: all frames of both go in (keys used to collide on
    the file name and the second import added nothing); importing a file again adds nothing."""
    import ase.io

    for folder, first in (("a", 0), ("b", 10)):
        (tmp_path / folder).mkdir()
        ase.io.write(tmp_path / folder / "frames.extxyz", [copper(first + k) for k in range(4)])
    assert main(["data", "import", str(tmp_path / "a" / "frames.extxyz"), str(tmp_path / "x.h5")]) == 0
    assert main(["data", "import", str(tmp_path / "b" / "frames.extxyz"), str(tmp_path / "x.h5")]) == 0
    assert main(["data", "import", str(tmp_path / "b" / "frames.extxyz"), str(tmp_path / "x.h5")]) == 0
    assert len(open_dataset(tmp_path / "x.h5")) == 8


def test_import_virial(tmp_path):
    """A `virial=` label is kept, as stress = -virial / V (it used to be dropped without a word)."""
    (tmp_path / "v.extxyz").write_text(
        '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.0 '
        'virial="0.5 0 0 0 0.25 0 0 0 0.5" pbc="T T T"\nCu 0 0 0 0 0 0\nCu 2.5 2.5 0 0 0 0\n')
    assert main(["data", "import", str(tmp_path / "v.extxyz"), str(tmp_path / "v.h5")]) == 0
    np.testing.assert_allclose(open_dataset(tmp_path / "v.h5").frame(0)["stress"],
                               [-0.004, -0.002, -0.004, 0, 0, 0])


# ------------------------------------------------------------------ ASE calculator


def _evaluate(w, atoms, model="model.pt", prop="energy"):
    atoms.calc = MLFFDCalculator(str(w / model))
    return atoms.get_stress() if prop == "stress" else atoms.get_potential_energy()


def _overlap():
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.1, 0, 0]
    return atoms


def _nan_position():
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.positions[2, 1] = np.nan
    return atoms


def _cell(cell, pbc=True):
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.set_cell(cell)
    atoms.pbc = pbc
    return atoms


CALCULATOR_CASES = {
    "missing model": (lambda w: MLFFDCalculator(str(w / "missing.pt")), "model file", "does not exist"),
    "directory as model": (lambda w: MLFFDCalculator(str(w / "adir")), "is a directory; give the model file"),
    "text file as model": (lambda w: MLFFDCalculator(str(w / "text.txt")), "not an mlffd model (not a TorchScript"),
    "dataset as model": (lambda w: MLFFDCalculator(str(w / "data.h5")), "not an mlffd model (not a TorchScript"),
    "plain TorchScript": (lambda w: MLFFDCalculator(str(w / "plain.pt")), "TorchScript file but not an mlffd model"),
    "checkpoint as model": (lambda w: MLFFDCalculator(str(w / "run" / "best.pt")), "PyTorch checkpoint",
                            "mlffd export RUN_DIR"),
    "newer format": (lambda w: MLFFDCalculator(str(w / "newer.pt")), f"format version {FORMAT_VERSION + 1}, newer than",
                     "upgrade mlffd"),
    "unknown device": (lambda w: MLFFDCalculator(str(w / "model.pt"), device="tpu"), "unknown device 'tpu'"),
    "unknown element": (lambda w: _evaluate(w, bulk("Si", "diamond", 5.43)), "element(s) Si not in the model"),
    "NaN position": (lambda w: _evaluate(w, _nan_position()), "positions contain NaN"),
    "overlapping atoms": (lambda w: _evaluate(w, _overlap()), "atoms overlap: two atoms are 0.100 A apart (< 0.5 A)",
                          "remove duplicated atoms"),
    "zero-volume cell": (lambda w: _evaluate(w, _cell(np.diag([3.6, 3.6, 0.0]))), "the periodic cell has zero volume"),
    "degenerate slab": (lambda w: _evaluate(w, _cell([[3.6, 0, 0], [3.6, 0, 0], [0, 0, 20]], [True, True, False])),
                        "the periodic cell has zero volume", "directions (ab)"),
    "stress of a cluster": (lambda w: _evaluate(w, _cell(np.zeros((3, 3)), False), prop="stress"),
                            "stress needs a cell periodic in all three directions"),
    "atomic number 200": (lambda w: _evaluate(w, _numbers(200)), "atomic number(s) 200 are not elements (1-118)"),
    "negative threads": (lambda w: MLFFDCalculator(str(w / "model.pt"), threads=-1),
                         "threads must be a positive integer", "got -1"),
}


def _numbers(z):
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.numbers[0] = z
    return atoms


@pytest.mark.parametrize("case", list(CALCULATOR_CASES))
def test_calculator(case, untouched):
    call, *expected = CALCULATOR_CASES[case]
    with pytest.raises(MLFFDError) as info:
        call(untouched.root)
    message = str(info.value)
    assert "\n" not in message and all(text in message for text in expected), message


def _rattled(k):
    atoms = bulk("Cu", "fcc", 3.6, cubic=True).repeat((2, 2, 1 + k % 2))
    atoms.rattle(0.1, seed=k)
    return atoms


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_calculator_cluster_with_nonfinite_cell(value, untouched):
    """A cluster's cell is never used: NaN or inf there gives the numbers of a zero cell, not NaN."""
    energies = []
    for cell in (np.zeros((3, 3)), np.diag([value, 5.0, 5.0])):
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=cell, pbc=False)
        atoms.calc = MLFFDCalculator(str(untouched.root / "model.pt"))
        energies.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert np.isfinite(energies[1][0]) and energies[1][0] == pytest.approx(energies[0][0], abs=1e-9)
    np.testing.assert_allclose(energies[1][1], energies[0][1], atol=1e-9)


def test_calculator_shared_by_threads(untouched):
    """Two threads on one calculator get exactly the serial numbers (it used to crash or mix them)."""
    import threading

    calc = MLFFDCalculator(str(untouched.root / "model.pt"))
    structures = [_rattled(k) for k in range(6)]

    def evaluate(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy(), atoms.get_forces()

    serial = [evaluate(a) for a in structures]
    bad = []

    def work():
        for _ in range(4):
            for a, (energy, forces) in zip(structures, serial):
                e, f = evaluate(a)
                if abs(e - energy) > 1e-9 or not np.allclose(f, forces, rtol=0, atol=1e-9):
                    bad.append(abs(e - energy))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, f"threaded energies differ from serial ones by up to {max(bad)} eV"


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_calculator_copies(how, untouched):
    """deepcopy and pickle reload the model from its path and give the same numbers."""
    import copy
    import pickle

    calc = MLFFDCalculator(str(untouched.root / "model.pt"))
    atoms = _rattled(0)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    twin = copy.deepcopy(calc) if how == "deepcopy" else pickle.loads(pickle.dumps(calc))
    assert twin.model_path == calc.model_path and twin.results["energy"] == energy
    other = _rattled(0)
    other.calc = twin
    assert other.get_potential_energy() == energy


# ------------------------------------------------------------------ LAMMPS decks


@pytest.fixture(scope="module")
def decks(ws):
    """LAMMPS data files in the workspace (so that they are checked for changes too)."""
    from mlffd.lammps_plugin.runner import lower_triangular, write_data

    atoms = lower_triangular(bulk("Cu", "fcc", 3.6, cubic=True).repeat((2, 2, 2)))
    atoms.rattle(0.05, seed=1)
    atoms = lower_triangular(atoms)
    write_data(atoms, ws.root / "cu.lmp", ["Cu"])
    write_data(atoms, ws.root / "cu2.lmp", ["Cu", "Cu"])
    write_data(atoms, ws.root / "cu_noid.lmp", ["Cu"], atom_ids=False)
    atoms.positions[1] = atoms.positions[0] + [0.05, 0.0, 0.0]
    write_data(atoms, ws.root / "cu_overlap.lmp", ["Cu"])
    ws.before = snapshot(ws.root)
    return ws


# (data file, deck lines between read_data and run, the text of the ERROR line)
LAMMPS_CASES = {
    "missing pair_coeff": ("cu.lmp", "pair_style mlffd", "All pair coeffs are not set"),  # LAMMPS's own check
    "too many elements": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Cu Cu",
                          "pair_coeff got 2 element(s) for 1 atom type(s)"),
    "unknown element": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Si",
                        "element 'Si' (atom type 1) is not known to model"),
    "missing model": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/missing.pt Cu", "cannot read model file"),
    "text file as model": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/text.txt Cu",
                           "is not an mlffd model (not a TorchScript archive)"),
    "plain TorchScript": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/plain.pt Cu",
                          "is not an mlffd model: it has no mlffd/metadata.txt"),
    "newer format": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/newer.pt Cu",
                     f"has format_version {FORMAT_VERSION + 1}, newer than"),
    "units real": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Cu", "requires 'units metal'"),
    "newton off": ("cu.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Cu", "requires 'newton on'"),
    "unknown keyword": ("cu.lmp", "pair_style mlffd fast", "unknown keyword 'fast'"),
    "keyword without value": ("cu.lmp", "pair_style mlffd fold_images", "'fold_images' needs yes or no"),
    "unknown device": ("cu.lmp", "pair_style mlffd device gpu", "unknown device 'gpu' (use cpu, cuda or cuda:N)"),
    "pair_coeff not * *": ("cu.lmp", "pair_style mlffd\npair_coeff 1 1 {w}/model.pt Cu",
                           "Pair_coeff must start with * * for pair style mlffd"),  # LAMMPS's own check
    "NULL without hybrid": ("cu2.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Cu NULL",
                            "atom type 2 is NULL in pair_coeff, but no other pair style handles it"),
    "every type NULL": ("cu2.lmp", "pair_style hybrid mlffd zero 4.0\npair_coeff * * mlffd {w}/model.pt NULL NULL",
                        "pair_coeff maps every atom type to NULL"),
    "fold_images yes without IDs": ("cu_noid.lmp", "pair_style mlffd fold_images yes\npair_coeff * * {w}/model.pt Cu",
                                    "'fold_images yes' needs atom IDs, but 'atom_modify id no' is set"),
    "overlapping atoms": ("cu_overlap.lmp", "pair_style mlffd\npair_coeff * * {w}/model.pt Cu",
                          "atoms overlap: two atoms are 0.050 A apart (< 0.5 A) (atom IDs 1 and 2); remove duplicated"),
}


@pytest.mark.lammps
@pytest.mark.parametrize("case", list(LAMMPS_CASES))
def test_lammps_deck(case, decks, plugin, tmp_path):
    from mlffd.lammps_plugin.runner import lammps_env, lmp_binary

    data, body, expected = LAMMPS_CASES[case]
    units = "real" if case == "units real" else "metal"
    newton = "off" if case == "newton off" else "on"
    ids = "atom_modify id no\n" if data == "cu_noid.lmp" else ""
    deck = (f"units {units}\nnewton {newton}\natom_style atomic\n{ids}read_data {decks.root / data}\n"
            f"plugin load {plugin}\n{body.format(w=decks.root)}\nrun 0\n")
    (tmp_path / "in.bad").write_text(deck)
    proc = subprocess.run([str(lmp_binary()), "-in", "in.bad", "-screen", "none", "-log", "log.lammps"],
                          cwd=tmp_path, env=lammps_env(), capture_output=True, text=True, timeout=120)
    log = (tmp_path / "log.lammps").read_text()
    errors = [ln for ln in log.splitlines() if ln.startswith("ERROR")]
    assert proc.returncode != 0 and len(errors) == 1, log[-2000:]
    assert expected in errors[0], errors[0]
    assert snapshot(decks.root) == decks.before, "a refused deck changed the workspace"
