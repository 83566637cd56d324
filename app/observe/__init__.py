"""What the service tells its operator: JSON log lines and Prometheus metrics."""
