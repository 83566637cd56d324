"""The SQLite store: one writer task committing batches, one read connection, one server
per file."""
