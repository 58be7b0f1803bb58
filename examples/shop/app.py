"""A tiny shop API: the example repository squad's recorded run works on."""

import json
from http.server import BaseHTTPRequestHandler, HTTPServer

ORDERS: dict[int, dict] = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        order_id = len(ORDERS) + 1
        ORDERS[order_id] = body
        self.send_response(201)
        self.end_headers()
        self.wfile.write(json.dumps({"id": order_id}).encode())

    def do_GET(self) -> None:
        order = ORDERS.get(int(self.path.strip("/") or 0))
        self.send_response(200 if order else 404)
        self.end_headers()
        self.wfile.write(json.dumps(order or {}).encode())


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
