"""The leaves: settings, errors, database access, logs, symbols, the trading calendar, schema and migrations."""
