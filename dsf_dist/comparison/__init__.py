"""The comparison: the trained and the existing model on the same test samples. report.py builds comparison.json
(the seed's Comparison, the task's statistics, the gates of gates.py), render.py and plots.py write it as
markdown, HTML with PNG plots and a terminal table, and saved.py compares two saved results folders."""
