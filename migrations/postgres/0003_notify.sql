-- Every committed write bumps the revision; tell listening replicas at once.
-- NOTIFY inside a transaction is delivered when it commits, never before.
CREATE FUNCTION keygate_notify_revision() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('keygate_changes', NEW.value::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revision_notify AFTER UPDATE ON revision
    FOR EACH ROW EXECUTE FUNCTION keygate_notify_revision();
