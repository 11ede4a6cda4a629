"""Fault injection: tests that run a Redis of their own (see harness.py)."""
