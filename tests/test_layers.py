"""The house rules that keep the code base navigable, checked on the source:

- one namespace: every module imports the package as `mlffd` (never the checkout folders'
  names `distiller`, `export`, `lammps_plugin`, which pytest could import as other modules);
- layers import one way: model core -> data and training -> export -> engines (ASE calculator,
  LAMMPS plugin) -> the applications (validate, bench, active learning, distill, CLI);
- product code never imports test helpers;
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
    ("mlffd.calculator", "mlffd.MLFFDCalculator", "mlffd.lammps_plugin"),
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
