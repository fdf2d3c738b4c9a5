"""The property table as Markdown, and the plots people look at: EOS, phonon bands, elastic
constants, RDF, MSD and the MD runs, student over teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEACHER_STYLE = {"color": "black", "ls": "--", "lw": 1.2}
STUDENT_STYLE = {"color": "tab:red", "ls": "-", "lw": 1.0}


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.floating)):
        return format(float(value), spec)
    return str(value)


def table_markdown(rows: list[dict]) -> str:
    lines = ["| property | unit | teacher | student | deviation | goal | ok |", "|---|---|---|---|---|---|---|"]
    notes = []
    for row in rows:
        spec = "+.3g" if row.get("signed", True) else ".3g"
        dev = "-" if row["deviation"] is None else f"{row['deviation']:{spec}} {row['deviation_unit']}".rstrip()
        goal = "-" if row["goal"] is None else f"{row['goal']:g} {row['deviation_unit']}".rstrip()
        ok = {True: "yes", False: "**no**", None: "-"}[row["ok"]]
        name = row["property"]
        if row.get("note"):
            notes.append(row["note"])
            name += f" [{len(notes)}]"
        lines.append(f"| {name} | {row['unit']} | {_fmt(row['teacher'])} | {_fmt(row['student'])} | {dev} | {goal} | {ok} |")
    if notes:
        lines += [""] + [f"[{k}] {n}" for k, n in enumerate(notes, 1)]
    return "\n".join(lines)


def write_plots(report_dir: Path, results: dict) -> list[str]:
    """PNG files for the properties that were computed; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    props = results["properties"]
    for name, fn in (("eos", _eos_plot), ("phonons", _phonon_plot), ("elastic", _elastic_plot)):
        if name in props and "failure" not in props[name]["student"]:
            fn(report_dir / f"{name}.png", props[name])
            written.append(f"{name}.png")
    if "md" in props and props["md"]["runs"]:
        _md_plots(report_dir, props["md"]["runs"])
        written += ["md.png", "rdf.png", "msd.png"]
    return written


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _eos_plot(path: Path, eos: dict) -> None:
    import matplotlib.pyplot as plt
    from ase.eos import birchmurnaghan
    from ase.units import GPa

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for side, style in (("teacher", TEACHER_STYLE), ("student", STUDENT_STYLE)):
        r = eos[side]
        v = np.asarray(r["volumes_A3_per_atom"])
        grid = np.linspace(v.min(), v.max(), 200)
        fit = birchmurnaghan(grid, r["e0_eV_per_atom"], r["B_GPa"] * GPa, r["Bprime"], r["v0_A3_per_atom"])
        ax.plot(grid, fit, **style, label=f"{side}: V0 {r['v0_A3_per_atom']:.3f} A^3, B {r['B_GPa']:.1f} GPa")
        ax.plot(v, r["energies_eV_per_atom"], "o", color=style["color"], ms=3.5, mfc="none")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.set_title("Equation of state (Birch-Murnaghan, ions relaxed)")
    ax.legend(fontsize=8)
    _save(fig, path)


def _phonon_plot(path: Path, ph: dict) -> None:
    import matplotlib.pyplot as plt

    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8.5, 4.5), sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    x = np.asarray(ph["axis"]["x"])
    for side, style in (("teacher", TEACHER_STYLE), ("student", STUDENT_STYLE)):
        bands = np.asarray(ph[side]["bands_THz"])
        for k in range(bands.shape[1]):
            ax.plot(x, bands[:, k], **style, label=side if k == 0 else None)
        ax_dos.plot(ph[side]["dos_weights"], ph[side]["dos_THz"], **style)
    for xs in ph["axis"]["special_x"]:
        ax.axvline(xs, color="grey", lw=0.5)
    ax.set_xticks(ph["axis"]["special_x"])
    ax.set_xticklabels(["Γ" if lab == "G" else lab for lab in ph["axis"]["labels"]])
    ax.set_xlim(x[0], x[-1])
    ax.axhline(0.0, color="grey", lw=0.5)
    ax.set_ylabel("frequency (THz)")
    ax.set_title(f"Phonons at the supercell's q-points: max |Δν| {ph['max_abs_dev_THz']:.3f} THz, "
                 f"mean {ph['mean_abs_dev_THz']:.3f}\nalong the path (interpolated): max {ph['path_max_abs_dev_THz']:.3f} THz",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax_dos.set_xlabel("DOS")
    ax_dos.set_xticks([])
    _save(fig, path)


def _elastic_plot(path: Path, el: dict) -> None:
    import matplotlib.pyplot as plt

    t, s = el["teacher"], el["student"]
    if "C11_GPa" in t:
        names = ["C11", "C12", "C44"]
        tv, sv = [t[f"{n}_GPa"] for n in names], [s[f"{n}_GPa"] for n in names]
    else:
        ct, cs = np.asarray(t["C_GPa"]), np.asarray(s["C_GPa"])
        pairs = [(i, j) for i in range(6) for j in range(i, 6) if abs(ct[i, j]) >= 5.0]
        names = [f"C{i + 1}{j + 1}" for i, j in pairs]
        tv, sv = [ct[i, j] for i, j in pairs], [cs[i, j] for i, j in pairs]
    names += ["B (VRH)", "G (VRH)"]
    tv += [t["B_VRH_GPa"], t["G_VRH_GPa"]]
    sv += [s["B_VRH_GPa"], s["G_VRH_GPa"]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 4))
    ax.bar(x - 0.2, tv, 0.4, color="0.4", label="teacher")
    ax.bar(x + 0.2, sv, 0.4, color="tab:red", label="student")
    for k, (a, b) in enumerate(zip(tv, sv)):
        if a:
            ax.annotate(f"{100 * (b - a) / abs(a):+.1f}%", (x[k] + 0.2, max(a, b, 0)), ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("GPa")
    ax.set_title("Elastic constants (relaxed ions), student deviation above the bars")
    ax.legend(fontsize=8)
    _save(fig, path)


def _md_plots(report_dir: Path, runs: dict) -> None:
    import matplotlib.pyplot as plt

    keys = list(runs)
    fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 6), squeeze=False)
    for col, key in enumerate(keys):
        for side, style in (("teacher", TEACHER_STYLE), ("student", STUDENT_STYLE)):
            series = runs[key][side].get("series")
            if not series:
                continue
            axes[0, col].plot(series["time_ps"], series["temperature_k"], **style, label=side)
            axes[1, col].plot(series["time_ps"], series["epot_ev_per_atom"], **style, label=side)
        axes[0, col].set_title(f"{key} K: {runs[key]['teacher']['simulated_ps']:.2f} ps teacher")
        axes[0, col].set_ylabel("temperature (K)")
        axes[1, col].set_ylabel("potential energy (eV/atom)")
        axes[1, col].set_xlabel("time (ps)")
        axes[0, col].legend(fontsize=8)
    _save(fig, report_dir / "md.png")

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for col, key in enumerate(keys):
        rdf = runs[key].get("rdf")
        ax = axes[0, col]
        if rdf:
            ax.plot(rdf["r_A"], rdf["teacher"], **TEACHER_STYLE, label=f"teacher ({rdf['frames']} frames)")
            if "student" in rdf:
                ax.plot(rdf["r_A"], rdf["student"], **STUDENT_STYLE, label="student")
                ax.set_title(f"{key} K: integrated |Δg| {100 * rdf['deviation']:.1f} %")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.legend(fontsize=8)
    _save(fig, report_dir / "rdf.png")

    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    for col, key in enumerate(keys):
        ax = axes[0, col]
        for side, style in (("teacher", TEACHER_STYLE), ("student", STUDENT_STYLE)):
            msd = runs[key].get("msd", {}).get(side)
            if not msd:
                continue
            for element, m in msd["per_element"].items():
                ax.plot(msd["lag_ps"], m["msd_A2"], **style, label=f"{side} {element} (D {m['D_A2_per_ps']:.3g} Å²/ps)")
        ax.set_title(f"{key} K")
        ax.set_xlabel("lag (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize=7)
    _save(fig, report_dir / "msd.png")
