"""HTTP routes, one module per domain noun; each route is a thin call into clew/service."""
