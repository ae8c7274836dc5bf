"""What the admins tell the guard: suppression lists and their sources."""
