"""The control plane: the controller that owns the weights, the events and the state
(`controller`), hot reload of the config file (`reload`), active health checks
(`health`) and the fleet of replicas sharing a store (`fleet`). See docs/operations.md."""
