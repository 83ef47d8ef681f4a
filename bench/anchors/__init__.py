"""Anchors: what PostgreSQL, other event stores and a bare web framework do on this machine.

Every module in this package is imported by ``bench.run`` and registers its benchmarks.
None of them imports the project's code.
"""
