"""Benchmarks: maas against the raw model, a naive worker and a pure relay, in one run."""
