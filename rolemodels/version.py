"""The package's version, at the ground so that every layer may read it (runtime/provenance.py does)."""
__version__ = "0.1.0"
