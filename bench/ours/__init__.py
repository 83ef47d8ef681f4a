"""Our own benchmarks (the store, the API, projections, reads).

Every module in this package is imported by ``bench.run`` and registers its benchmarks with
``bench.registry.benchmark`` (and, where it needs one, a ``group_fixture``). Nothing here
depends on the anchors; the ratios between the two are declared in ``bench.targets``.
"""
