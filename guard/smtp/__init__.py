"""SMTP in: listeners, sessions, limits, identity; the only place that speaks SMTP replies."""
