"""Delivery upstream: claims, attempts, DSNs."""
