"""One thin entry point per DVC stage: `python -m <package>.stages.<stage> [key=value ...]`."""
