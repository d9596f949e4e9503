"""GridHub: the integration hub of a county governance command centre."""

__version__ = "0.1.0"
