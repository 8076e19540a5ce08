"""The fast path: what lets a request skip work the general path would do for it."""
