"""Risk detectors. Pure functions over a parsed message and a context snapshot."""
