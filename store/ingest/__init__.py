"""Taking footage in: the ingest session, durable segment writes, events."""
