"""Reference documents generated from the declarations the code runs on.

docs/config.md (runtime.config.reference), docs/diagnostics.md (diagnostics) and
docs/metrics.md (metrics) are each a pure rendering; `mosnx docs <name>` prints
one, and a test keeps each committed file equal to its rendering.
"""
