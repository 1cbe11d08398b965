"""clew server: the HTTP API (``create_app``), its authentication and permission table."""
