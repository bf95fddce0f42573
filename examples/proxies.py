"""Expose a small web app through a proxy: public, then behind a token; stats; errors.

    python examples/proxies.py                     # in-process engine on DXFLOW_HOME
    DXFLOW_URL=http://127.0.0.1:7419 DXFLOW_KEY=~/.dxflow/keys/master.pem \\
        python examples/proxies.py                 # a booted engine on this machine

The app is Python's http.server on a free loopback port, in a thread of this program;
the proxy gets a port of its own (port=0 picks one), so it is served by whichever process
runs the engine, an in-process one too. (A proxy without a port is served under
`<engine URL>/p/NAME/` by a booted engine: `dxflow boot up`.)
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import dxflow

NAME = os.environ.get("PROXY_NAME", "example-web")


class Hello(BaseHTTPRequestHandler):
    """The app: says hello, and what it was sent that a proxy might have touched."""

    def do_GET(self) -> None:
        seen = "with" if "authorization" in {k.lower() for k in self.headers} else "without"
        body = f"hello from the example app ({seen} an Authorization header)\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep the example's output readable
        pass


def start_app() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    app = start_app()
    target = f"127.0.0.1:{app.server_address[1]}"
    with dxflow.Engine.from_env() as engine, httpx.Client(timeout=30) as client:
        proxy = engine.proxies.create(NAME, target=target, port=0, auth="none", exist_ok=True)
        print(f"proxy {proxy.name} -> {target}, serving at {proxy.url}")
        assert proxy.url is not None  # a port of its own always has one

        answer = client.get(proxy.url)
        print(f"auth none: {answer.status_code} {answer.text.strip()}")

        # Behind a token: a dxflow bearer token whose identity has PROXY. The proxy
        # checks it, and strips it before forwarding: the app never sees it.
        proxy.update(auth="token")
        token = engine.token().token
        refused = client.get(proxy.url)
        admitted = client.get(proxy.url, headers={"Authorization": f"Bearer {token}"})
        print(f"auth token: without {refused.status_code}, with {admitted.status_code}")
        print(f"  the app answered: {admitted.text.strip()}")

        # A target that is gone: 502, with a body naming the target and the error.
        app.shutdown()
        app.server_close()
        gone = client.get(proxy.url, headers={"Authorization": f"Bearer {token}"})
        print(f"target gone: {gone.status_code} {gone.json()['error']['message']}")

        stats = proxy.stats()
        print(f"stats: {stats.requests} requests, answers {dict(sorted(stats.responses.items()))}")
        print(f"  refused {stats.refused}, {stats.bytes_out} bytes to clients")
        for row in stats.targets:
            print(f"  target {row.target}: {row.requests} requests, {row.failures} failed")

        proxy.remove()
        print(f"removed; proxies left: {[p.name for p in engine.proxies.list()]}")


if __name__ == "__main__":
    main()
