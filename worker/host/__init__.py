"""What touches the host's own tables: the price mirror, the legacy backfill and the analytics cache."""
