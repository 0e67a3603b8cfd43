"""Data roots, canonical-format loaders and synthetic generators."""
from paperzoo.data.roots import DataNotFoundError, locate, search_roots

__all__ = ["DataNotFoundError", "locate", "search_roots"]
