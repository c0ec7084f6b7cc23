"""StreamFlow package."""
