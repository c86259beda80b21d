"""Benchmarks (`make bench`); results go to docs/performance.md with the command that made them."""
