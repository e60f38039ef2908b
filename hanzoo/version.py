"""The package version: written here once, read by the package, the wheel build and every record."""

__version__ = "0.1.0"
