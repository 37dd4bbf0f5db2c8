"""The per-site agent. It imports nothing from the hub's Django apps and needs no database;
it arrives with the site-agent work."""
