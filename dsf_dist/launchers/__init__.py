"""The launchers: who started this process, and what each launcher needs from dsf and gives it.

environment.py resolves rank, world and node from any launcher (the one resolver); registry.py gives the trainer
the launcher's cluster environment and callbacks; torchrun.py and slurm.py hold each launcher's checks (and
SLURM's requeue); ray_train.py is Ray Train's side inside a worker. The entry points a cluster runs sit here
too: `python -m dsf_dist.launchers.ray` (the Ray driver, ray.py) and the Ray worker's body (ray_worker.py).
"""
