"""The inventory: the fleet as loaded plus dynamic state, in SQLite or PostgreSQL."""

from hotspare.inventory.db import database_url, engine, migrate, session

__all__ = ["database_url", "engine", "migrate", "session"]
