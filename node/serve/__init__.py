"""The node's network face: /live, /health, /metrics."""
