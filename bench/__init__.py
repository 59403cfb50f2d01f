"""Benchmarks (scripts, not tests): run ``python -m bench``; see "Benchmarks" in README.md."""
