"""Models of the storage estate. Only ``Site`` exists so far (users' profiles point at it);
nodes, queues, spaces, buckets and targets arrive with the inventory work."""

from sites.models.site import Site

__all__ = ["Site"]
