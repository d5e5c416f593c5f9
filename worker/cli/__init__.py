"""The command line: one module per command group and the worker assembled in one place."""
