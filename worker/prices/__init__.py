"""Daily prices: the sources, validation, spelling, rate limits and the source chain."""
