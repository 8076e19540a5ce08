"""mosnx.proxy"""
