"""Why Starlette on uvicorn: requests/s of a trivial JSON endpoint, against aiohttp.web.

Each server runs in a process of its own, one worker, answering ``GET /v2/health/live``
with ``{"live": true}``; the load generator is another process holding ``--connections``
keep-alive HTTP/1.1 connections (raw asyncio streams, so that the client costs as little
as it can) for ``--seconds``, twice per server, alternating. What it measures is the
framework and server overhead per request, which the gateway pays on every call.

    python bench/asgi_choice.py [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time

REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: bench\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_starlette(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"live": True})

    app = Starlette(routes=[Route("/v2/health/live", live)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    app = web.Application()
    app.router.add_get("/v2/health/live", live)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _connection(port: int, until: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    while time.perf_counter() < until:
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        done += 1
    writer.close()
    return done


async def _load(port: int, connections: int, seconds: float) -> float:
    for _ in range(100):  # wait for the server to listen
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    until = time.perf_counter() + seconds
    counts = await asyncio.gather(*(_connection(port, until) for _ in range(connections)))
    return sum(counts) / seconds


def measure(serve: str, connections: int, seconds: float) -> float:
    port = _free_port()
    target = serve_starlette if serve == "starlette+uvicorn" else serve_aiohttp
    server = multiprocessing.get_context("spawn").Process(target=target, args=(port,), daemon=True)
    server.start()
    try:
        return asyncio.run(_load(port, connections, seconds))
    finally:
        server.terminate()
        server.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for run in (1, 2):
        for name in ("starlette+uvicorn", "aiohttp.web"):
            rate = measure(name, args.connections, args.seconds)
            print(f"run {run}  {name:18s} {rate:8.0f} requests/s", flush=True)


if __name__ == "__main__":
    main()
