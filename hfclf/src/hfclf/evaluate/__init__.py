"""evaluate: test-split metrics with bootstrap intervals, and cheap baselines to beat."""
