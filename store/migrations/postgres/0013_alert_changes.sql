-- The alert queue's live stream asks for a tenant's latest alert change every second.
CREATE INDEX alerts_updated ON alerts (tenant, updated_at);
