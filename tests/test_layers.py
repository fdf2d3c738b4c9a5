"""The house rules that keep the code base navigable, checked on the source:

- one namespace: every module imports the package as `mlffd` (never the checkout folders'
  names `distiller`, `export`, `lammps_plugin`, which pytest could import as other modules);
- layers import one way: model core -> data and training -> export -> engines (ASE calculator, the
  reference calculator, LAMMPS plugin) -> the applications (validate, bench, active learning,
  distill, CLI);
- product code never imports test helpers;
- rooms do one job (validate is physics, bench is speed; a teacher adapter knows only the shared
  adapter module) and the Voigt order has one owner (mlffd.voigt);
- deployment needs only what deployment needs: a frozen model runs in ASE with torch, ase and
  vesin, without e3nn, h5py or matplotlib.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"distiller": "mlffd", "export": "mlffd.export", "lammps_plugin": "mlffd.lammps_plugin"}
LAYERS = [
    ("mlffd.__version__", "mlffd.errors", "mlffd.flags", "mlffd.model", "mlffd.neighbours", "mlffd.relax",
     "mlffd.md", "mlffd.voigt"),
    ("mlffd.data", "mlffd.training", "mlffd.teachers"),
    ("mlffd.export",),
    ("mlffd.calculator", "mlffd.MLFFDCalculator", "mlffd.lammps_plugin", "mlffd.reference"),
    ("mlffd.validate", "mlffd.bench", "mlffd.active", "mlffd.distill", "mlffd.info", "mlffd.cli"),
]


def _modules():
    """(module name, path) of every product module (the package root `mlffd` itself excluded: it
    only re-exports MLFFDCalculator, lazily)."""
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if "build" in parts:
                continue
            name = ".".join([package, *parts])
            name = name[: -len(".__init__")] if name.endswith(".__init__") else name
            if name != "mlffd":
                yield name, path


def _imports(path: Path):
    """(line, imported name) for every absolute import in the file, at any depth (lazy imports count)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)


def _layer(name: str) -> int:
    matches = [(len(prefix), k) for k, prefixes in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} belongs to no layer: add it to LAYERS in {__file__}"
    return max(matches)[1]


def test_every_module_imports_the_package_as_mlffd():
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for _, path in _modules()
           for line, name in _imports(path) if name.split(".")[0] in FOLDERS]
    assert not bad, bad


def test_layers_import_one_way():
    upward = []
    for module, path in _modules():
        for line, name in _imports(path):
            if name.startswith("mlffd.") and _layer(name) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {name} (layer {_layer(name)}), "
                              f"{path.relative_to(ROOT)}:{line}")
    assert not upward, upward


def test_product_code_imports_no_test_helpers():
    helpers = [f"{path.relative_to(ROOT)}:{line} imports {name}" for _, path in _modules()
               for line, name in _imports(path)
               if name.startswith("mlffd.") and ("testing" in name.split(".") or name.startswith("tests"))]
    assert not helpers, helpers


# Rooms that do one job: physics validation and speed benchmarking share nothing but the layers
# above them; a teacher adapter knows the shared adapter module, not the registry or its siblings.
SEPARATE_ROOMS = [("mlffd.validate", "mlffd.bench"), ("mlffd.bench", "mlffd.validate")]
TEACHER_ADAPTERS = ("chgnet", "emt", "mace", "orb", "sevennet")


def test_rooms_do_one_job():
    crossing = [f"{module} imports {name}, {path.relative_to(ROOT)}:{line}"
                for module, path in _modules() for room, other in SEPARATE_ROOMS if module.startswith(room + ".")
                for line, name in _imports(path) if name == other or name.startswith(other + ".")]
    assert not crossing, crossing
    for adapter in TEACHER_ADAPTERS:
        path = ROOT / "distiller" / "teachers" / f"{adapter}.py"
        siblings = [name for _, name in _imports(path)
                    if name.startswith("mlffd.teachers.") and not name.startswith("mlffd.teachers.adapter")]
        assert not siblings, f"{path.relative_to(ROOT)} imports {siblings}"
    registered = {path.stem for path in (ROOT / "distiller" / "teachers").glob("*.py")} - {
        "__init__", "adapter", "registry", "cli"}
    assert registered == set(TEACHER_ADAPTERS), "a teacher adapter file is not in TEACHER_ADAPTERS"


def test_a_bench_engine_is_one_file_and_one_registration():
    """Each module in mlffd/bench/engines is registered in ENGINES by its file name and knows the
    plan and its own host, not its sibling engines or the bench that drives it."""
    from mlffd.bench.engines import ENGINES

    folder = ROOT / "distiller" / "bench" / "engines"
    files = {path.stem for path in folder.glob("*.py")} - {"__init__"}
    assert {name: rows.__module__ for name, rows in ENGINES.items()} == {
        name: f"mlffd.bench.engines.{name}" for name in files}
    for name in files:
        reaches = [imported for _, imported in _imports(folder / f"{name}.py")
                   if imported.startswith("mlffd.bench.")
                   and not imported.startswith(("mlffd.bench.plan", "mlffd.bench.worker"))]
        assert not reaches, f"engine {name} imports {reaches}"


# Literal index lists that reorder Voigt components: only mlffd.voigt writes them (and the TorchScript
# kernel, which cannot read a module-level tuple; test_student checks its order).
VOIGT_LITERALS = ("[0, 4, 8, 5, 2, 1]", "[0, 4, 8, 1, 2, 5]", "[0, 1, 2, 1, 0, 0]", "[0, 5, 4, 5, 1, 3, 4, 3, 2]",
                  "[0, 3, 4, 3, 1, 5, 4, 5, 2]", "[0, 1, 2, 5, 4, 3]")
VOIGT_OWNERS = ("distiller/voigt.py", "distiller/model/kernels.py")


def test_one_owner_of_the_voigt_order():
    restated = [f"{path.relative_to(ROOT)} writes {literal}" for _, path in _modules()
                if str(path.relative_to(ROOT)) not in VOIGT_OWNERS
                for literal in VOIGT_LITERALS if literal in path.read_text()]
    assert not restated, restated


DEPLOYMENT = r"""
import importlib.abc, json, sys
BLOCKED = ("e3nn", "h5py", "matplotlib", "sevenn", "yaml")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"deployment imported {name}")

sys.meta_path.insert(0, Block())
from ase.build import bulk
from mlffd import MLFFDCalculator

out = {}
for model in sys.argv[1:]:
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.05, seed=3)
    atoms.calc = MLFFDCalculator(model)
    out[model] = {"forces": atoms.get_forces().tolist(), "stress": atoms.get_stress().tolist()}
print(json.dumps({"result": out, "loaded": sorted(m for m in BLOCKED if m in sys.modules)}))
"""


def test_deployment_runs_without_training_packages(tmp_path):
    from ase.build import bulk

    from mlffd import MLFFDCalculator
    from mlffd.export.testing import make_demo_model

    models = [str(make_demo_model(tmp_path / "plain.pt", use_ops=False)),
              str(make_demo_model(tmp_path / "ops.pt", use_ops=True, dtype="float32"))]
    proc = subprocess.run([sys.executable, "-c", DEPLOYMENT, *models], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    for model in models:
        atoms = bulk("Si", "diamond", 5.43, cubic=True)
        atoms.rattle(0.05, seed=3)
        atoms.calc = MLFFDCalculator(model)
        assert np.abs(atoms.get_forces()).max() > 1e-5  # a real answer, not zeros (random weights: small)
        np.testing.assert_allclose(report["result"][model]["forces"], atoms.get_forces(), rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(report["result"][model]["stress"], atoms.get_stress(), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("name", ["distiller", "export", "lammps_plugin"])
def test_checkout_folder_names_are_not_installed_modules(name, tmp_path):
    """Outside the checkout the generic folder names do not import (only `mlffd` is installed)."""
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "No module named" in proc.stderr
