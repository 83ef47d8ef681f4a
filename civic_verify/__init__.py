"""Offline verification of civic-ledger evidence: standard library and ``cryptography`` only.

Nothing here imports the server (tests/unit/test_civic_verify_imports.py checks it), so an
inspector can copy this package, or install the project, and check a bundle on a machine
that never talked to the server. The server imports the tree and note code from here, so
what it builds and what the inspector checks are one implementation.
"""
