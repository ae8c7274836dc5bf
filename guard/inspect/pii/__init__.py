"""Personal-data detectors: one RE2 pass, check digits, context words, tables."""
