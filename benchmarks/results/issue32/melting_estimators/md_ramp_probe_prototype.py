import sys, time, numpy as np
from ase import units
from ase.md.langevin import Langevin
from mlffd.data.systems import load_system, with_supercells
from mlffd.teachers.registry import load_teacher
from mlffd.md import md_timestep, initial_velocities, THERMOSTAT_FRICTION_PER_FS
from ase.geometry import get_distances

system = sys.argv[1]; rate = float(sys.argv[2])  # K per ps
t0, tmax = 300.0, 5000.0
atoms = with_supercells(load_system(system), 5.0)[0].images[0].copy()
calc = load_teacher("sevennet-0")
atoms.calc = calc
d = atoms.get_all_distances(mic=True); np.fill_diagonal(d, np.inf); dmin = d.min(axis=1)
start = atoms.get_positions().copy()
dt = md_timestep(atoms)
initial_velocities(atoms, t0, 0)
dyn = Langevin(atoms, timestep=dt*units.fs, temperature_K=t0, friction=THERMOSTAT_FRICTION_PER_FS/units.fs, fixcm=True, rng=np.random.default_rng(0))
step = 0; t=time.time(); lost_at=None
sym = np.array(atoms.get_chemical_symbols())
while True:
    T = t0 + rate * step * dt / 1000.0
    if T > tmax: break
    dyn.set_temperature(temperature_K=T)
    dyn.run(10); step += 10
    disp = atoms.get_positions() - start
    disp = disp - disp.mean(axis=0)
    from ase.geometry import find_mic
    disp, dist = find_mic(disp, atoms.cell, atoms.pbc)
    frac = (dist > 0.5 * dmin).mean()
    per = {e: round(float((dist[sym==e] > 0.5*dmin[sym==e]).mean()),2) for e in sorted(set(sym))}
    print(f"{step} T={T:.0f} Tkin={atoms.get_temperature():.0f} frac={frac:.2f} {per} rms={np.sqrt((dist**2).mean()):.2f}", flush=True)
    if frac > 0.5 and lost_at is None:
        lost_at = T; print("LOST", T, time.time()-t, flush=True); break
print("calls", step, "time", time.time()-t)
