"""What happens to a received message before the 250: decide, then commit."""
