"""Daily prices: the sources, validation, spelling, rate limits, the source chain and the pure fetch decisions."""
