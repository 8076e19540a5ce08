"""Span export, off the hot path: a bounded queue per exporter drained by a task
(export.py), and the wire formats (otlp.py, zipkin.py, skywalking.py) over gRPC
or a small HTTP client (http_post.py). The spans come from runtime.tracing."""
