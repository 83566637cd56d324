"""The PostgreSQL store: several processes and hosts share one database, which decides."""
