"""data: read, validate, split and profile a dataset (the prepare stage)."""
