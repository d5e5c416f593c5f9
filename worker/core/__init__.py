"""The leaves: settings, errors, database access, logs, symbols, the trading calendar, the schema filters, the embedded server and the metrics recorder interface."""
