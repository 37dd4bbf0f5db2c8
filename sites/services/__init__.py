"""Use cases of the estate: each takes an explicit ``actor`` where someone asked for it."""
