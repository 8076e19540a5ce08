"""mosnx: a programmable cloud-native network proxy."""
__version__ = "0.1.0"
