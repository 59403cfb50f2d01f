"""Benchmarks (scripts, not tests): run ``python -m bench``; see bench/README-section.md."""
