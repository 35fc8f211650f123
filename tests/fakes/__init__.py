"""Deterministic fakes for what unit tests of policy should not start for real."""
