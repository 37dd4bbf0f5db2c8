"""Serializers of the hub's platform resources (one module per concept)."""
