"""The store's network face: routes, the query API, /metrics."""
