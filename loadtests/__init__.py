"""Load tests (locust) and the benchmark (wrk, plus an open-loop client)."""
