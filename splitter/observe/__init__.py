"""What is seen of the traffic: one observation per request (`observation`), the counters
behind the metrics (`counters`), the per-pool statistics the judge and the dashboard read
(`stats`), and the Prometheus exposition (`metrics`). See docs/operations.md#metrics."""
