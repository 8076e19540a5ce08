"""Multiplexed request/response RPC (MOSN's X-Protocol): the codec contract, the
downstream connection, the multiplexed upstream pool, and the codecs shipped.

Importing this package registers the shipped codecs (Bolt, Dubbo, Thrift); a protocol
added later is one more module that calls codec.register().
"""
from . import bolt, dubbo, thrift  # noqa: F401  (each registers its codec)
