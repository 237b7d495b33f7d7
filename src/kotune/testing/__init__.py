"""Tiny offline bases for tests and the demo (`kotune.testing.tiny`)."""
