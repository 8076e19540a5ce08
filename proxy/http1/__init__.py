"""mosnx.proxy.http1"""
