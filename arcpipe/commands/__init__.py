"""CLI verbs, one module each; each defines ``command`` and registers nothing itself."""
