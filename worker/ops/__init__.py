"""What operators run and see: the migration runner, status facts, Prometheus metrics, the HTTP endpoint and the status page."""
