"""Data movement between locations."""
