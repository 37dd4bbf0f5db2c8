"""Filter sets of the estate endpoints, one module per area."""
