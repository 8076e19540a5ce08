"""mosnx.dsl"""
