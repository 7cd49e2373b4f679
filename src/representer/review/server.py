"""Serve the review app with uvicorn on a socket bound here (so that port 0 picks a free port)."""

from __future__ import annotations

import socket
import threading
import webbrowser
from collections.abc import Callable
from urllib.parse import quote

from ..errors import InputError
from .session import Review


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one); a clear error if it is taken."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        raise InputError(f"Cannot serve on {host}:{port} ({exc.strerror or exc}); pick another --port or --host.") from exc
    return sock


def url_of(sock: socket.socket, host: str, token: str) -> str:
    """The address to open: ``http://HOST:PORT/?token=…``."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={quote(token)}"


def serve(review: Review, *, host: str = "127.0.0.1", port: int = 0, open_browser: bool = True,
          on_ready: Callable[[str], None] = print) -> None:
    """Serve ``review`` until interrupted (Ctrl-C); ``on_ready`` is told the URL (with its token) first."""
    try:
        import uvicorn

        from .app import create_app, new_token
    except ModuleNotFoundError as exc:
        raise InputError(f"The review app needs {exc.name}: `pip install 'representer[review]'`.") from exc
    token = new_token()
    sock = bind(host, port)
    url = url_of(sock, host, token)
    server = uvicorn.Server(uvicorn.Config(create_app(review, token, host=host), log_level="warning", lifespan="off",
                                           access_log=False))
    on_ready(url)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    with sock:
        server.run(sockets=[sock])
