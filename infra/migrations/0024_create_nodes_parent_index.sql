-- Children of a node in code order (GET /v1/nodes?parent=, the console's drill-down): an
-- index scan of one parent's rows instead of a range over its whole subtree.
CREATE INDEX nodes_parent_code ON nodes (parent_id, code COLLATE "C");
