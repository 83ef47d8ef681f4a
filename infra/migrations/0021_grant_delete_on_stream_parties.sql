-- A stream's parties are who may see it now, not who ever took part: an issue returned by
-- its unit, or reassigned to another, leaves the former unit's view (row-level security
-- reads stream_parties through civic_party_streams()). The ledger keeps who took part (the
-- events are append-only); this directory is current state, so ending a party deletes its
-- row, in the same transaction as the event that ends it.
GRANT DELETE ON stream_parties TO civic_app;
