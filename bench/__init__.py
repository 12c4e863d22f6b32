"""Benchmarks: scripts that print their figures and append them to bench/results/*.jsonl (bench/README.md).

Run them from the repository root as modules, e.g. `python -m bench.bench_teacher --n 16`."""
