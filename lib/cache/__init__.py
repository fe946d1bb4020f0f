"""Response caching: exact (hash of the canonical request) and semantic (by meaning, with guards)."""
