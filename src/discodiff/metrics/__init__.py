"""Metrics: pure functions on tensors."""
