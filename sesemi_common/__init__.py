"""Framework-free parts of sesemi (numpy only): config, datasets, splits, statistics, run records."""
