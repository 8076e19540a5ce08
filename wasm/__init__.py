"""mosnx.wasm"""
