"""Benchmarks: figures are ratios against bare baselines measured in the same run."""
