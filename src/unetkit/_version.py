"""The package version, importable from anywhere without reaching into unetkit/__init__."""

__version__ = "0.1.0"
