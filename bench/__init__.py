"""Benchmarks of evictwatch on the real local control plane (see bench/README.md)."""
