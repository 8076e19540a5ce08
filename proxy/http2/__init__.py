"""HTTP/2 downstream: the server protocol and what turns a connection into it."""
