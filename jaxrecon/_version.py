"""The package version (recorded in summary.json and in the config hash)."""

__version__ = "0.1.0"
