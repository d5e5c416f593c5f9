"""The job queue: the store, the runner, job outcomes, housekeeping and the worker registry."""
