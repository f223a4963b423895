"""Prefect blocks: typed credentials the fleet file refers to by name.

Register them with ``prefect block register -m blocks.credentials``. Nothing here loads a
block at import time.
"""
