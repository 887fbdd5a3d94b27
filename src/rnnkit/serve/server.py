"""The uvicorn server that runs ``rnnkit serve``'s app on a socket bound before it serves (so its URL is known)."""

import socket

from fastapi import FastAPI

from rnnkit.serve.schemas import Limits

__all__ = ["Server"]


class Server:
    """uvicorn serving an app on a socket bound at construction (so ``url`` is known before it serves).

    ``serve_forever()`` blocks until SIGINT/SIGTERM (in the main thread) or ``shutdown()`` (from another thread);
    ``server_close()`` frees the port.
    """

    def __init__(self, app: FastAPI, host: str, port: int, limits: Limits, quiet: bool = False) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
        except OSError:
            self.socket.close()
            raise
        self.app = app
        self.server_address = self.socket.getsockname()
        config = uvicorn.Config(
            app,
            log_level="warning" if quiet else "info",
            access_log=not quiet,
            limit_concurrency=limits.max_connections,  # more at once: 503
            timeout_keep_alive=max(1, int(limits.timeout)),  # idle connections close
            timeout_graceful_shutdown=int(max(limits.timeout, 1)),
            http="h11",
            h11_max_incomplete_event_size=65536,  # request line and headers: larger is a 400
            server_header=False,
        )
        self.server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def serve_forever(self) -> None:
        self.server.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self.server.should_exit = True

    def server_close(self) -> None:
        self.socket.close()
