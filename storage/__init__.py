"""Storage: what both stores share (the EventStore protocol, records, money, the batch
writer and loader, roll-up deltas, report spans, views), with SQLite in storage/sqlite/ and
PostgreSQL in storage/postgres/."""
