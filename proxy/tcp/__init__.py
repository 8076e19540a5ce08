"""L4: the TCP proxy, TLS ClientHello inspection for SNI routing, and SO_ORIGINAL_DST."""
