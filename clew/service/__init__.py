"""Business rules. The embedded client and the server both call these, and nothing else does."""
