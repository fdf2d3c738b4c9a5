"""The physics suite of `mlffd validate`: one code path for the student and the teacher.

    crystal.py      the starting crystal, relaxations, each model's own equilibrium
    elasticity.py   equation of state (Birch-Murnaghan) and the elastic tensor (VRH moduli)
    phonons.py      finite-displacement phonon bands and DOS (ase.phonons)
    defects.py      vacancy formation energies, surface energies
    dynamics.py     the MD protocol, RDF, MSD and diffusion, stability
    suite.py        runs both sides within a budget and builds the property table
    report.py       the table as Markdown and the plots
"""
