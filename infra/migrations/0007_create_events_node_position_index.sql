-- Per-node scans in position order (GET /v1/nodes/{code}/history of a small subtree inside a
-- large tenant). Positions do not follow node_seq within a node (a transaction's id is taken
-- before it waits for the node's chain lock), so events_node_seq cannot serve this order.
CREATE INDEX events_node_position ON events (node_id, position);
