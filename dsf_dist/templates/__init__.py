"""The projects `dsf init` writes (dsf_dist/init.py), as package data: never imported by dsf-dist.

common/ holds what every project gets (main.py, the run instructions of README.md, the config sections every task
shares, slurm/train.sh: a symlink to the repository's script); each task's folder what its project adds (data.py,
model.py, its config sections and README head, and any prepare.py). The files are the user's from the moment they
are written: they import dsf-dist's public pieces, which is why this package sits above every other layer.
"""
