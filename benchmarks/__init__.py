"""Benchmarks: run by `make bench`, never collected as tests; each writes JSON under benchmarks/results/."""
