"""Benchmarks for SHT CCTV. ``just bench`` runs ``python3 -m bench.run``."""
