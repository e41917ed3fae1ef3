"""HTTP handlers, one module per area: invoke, tasks, manage, ops."""
