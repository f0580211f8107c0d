"""Composition: the `streamrec` CLI, the embedded stack runner and one module per worker."""
