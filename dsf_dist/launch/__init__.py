"""Launch glue: environment detection (and, later, torchrun / SLURM / Ray helpers used by launchers/)."""
