"""What operators see: status facts, Prometheus metrics, the HTTP endpoint and status page."""
