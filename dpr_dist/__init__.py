"""dpr-dist."""
