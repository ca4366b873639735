"""preflight: what runs before real compute - review of the splits, smoke test, training plan, approval."""
