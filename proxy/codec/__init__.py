"""mosnx.proxy.codec"""
