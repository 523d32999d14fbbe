"""Benchmarks: each measures a candidate against a baseline run in the same command and prints
the ratio and its target (``python -m bench --list``; ``make bench``). See ``bench/__main__.py``."""
