"""Statements that set how the server treats one transaction (worker/core/db.py runs them)."""

# This transaction's lock waits end after $1 milliseconds (SQLSTATE 55P03). set_config(...,
# true) is SET LOCAL: it ends with the transaction, so behind a transaction-pooling proxy it
# never outlives our transaction on a server connection another client uses next.
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', $1, true)"
