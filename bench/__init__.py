"""Benchmark harness: our figures and the anchors' measured in one run, reported as ratios.

Entry point: ``python -m bench.run [--quick] [--only NAME,...] [--database-url URL]``.
"""
