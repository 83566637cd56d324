"""Per-transaction actors: all work on one transaction runs in order, in memory."""
