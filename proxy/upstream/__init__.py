"""mosnx.proxy.upstream"""
