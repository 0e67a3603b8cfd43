"""Metrics shared by more than one method."""
