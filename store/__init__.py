"""The store (the NAS): takes segments, keeps them durably, indexes them in SQLite."""
