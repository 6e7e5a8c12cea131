"""Benchmark tables, published reference rows, reports, and the bench runner."""
