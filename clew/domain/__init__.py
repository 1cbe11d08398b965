"""Plain values of clew's world: ids, digests, refs and records. No I/O lives here."""
