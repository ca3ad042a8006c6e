"""The SQLite index: schema, migrations, queries, timelines, settings."""
