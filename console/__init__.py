"""The operator's console. The Textual app arrives with its own issue; for now a rich fleet view."""
