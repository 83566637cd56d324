"""Postbacks: rendered when a conversion fires, stored with it, delivered at least once."""
