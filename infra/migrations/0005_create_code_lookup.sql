-- Codes are unique across the deployment (statutory codes are national), but row-level
-- security limits the directory to one root tenant. This definer-rights check answers only
-- "is this code in use", never which tenant uses it.
CREATE FUNCTION civic_code_taken(p_code text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT EXISTS (SELECT 1 FROM nodes WHERE code = p_code)
        OR EXISTS (SELECT 1 FROM node_aliases WHERE code = p_code)
$$;
REVOKE ALL ON FUNCTION civic_code_taken(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION civic_code_taken(text) TO civic_app;
