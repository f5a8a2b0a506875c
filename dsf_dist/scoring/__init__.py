"""How predictions become numbers, for every task and the comparison alike: per-sample predictions, paired
bootstrap intervals, McNemar's test, per-class counts (numpy and scipy only, so saved results score anywhere)."""
