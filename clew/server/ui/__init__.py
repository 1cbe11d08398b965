"""clew's web UI: server-rendered pages over the service layer, with our own small JS.

``create_ui_router`` plugs the pages into any FastAPI app (the clew server supplies its
store, authentication and permissions); ``create_ui_app`` wraps them for ``clew ui``.
"""

from clew.server.ui.app import create_ui_app
from clew.server.ui.router import create_ui_router

__all__ = ["create_ui_app", "create_ui_router"]
