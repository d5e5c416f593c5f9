"""Runtime SQL: one module per concern, each statement a named constant."""
