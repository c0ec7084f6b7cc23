"""Workflow model: the dataflow graph and its step kinds."""
