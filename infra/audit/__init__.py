"""The audit trail: per-node hash chains checked, signed checkpoints, inclusion proofs, the
per-root transparency tree, witness cosignatures and the evidence bundle.

Every function that reads the database runs inside the caller's transaction, normally a
scoped read-only one, so row-level security limits it to the caller's subtree whatever the
query says. The chain hashing itself is ``infra.chain`` (the event store computes it on
append).
"""
