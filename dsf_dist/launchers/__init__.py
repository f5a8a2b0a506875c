"""Entry points that start dsf's workers through a cluster's own launcher: `python -m dsf_dist.launchers.ray`."""
