"""A minimal Hugging Face Hub on 127.0.0.1 (stdlib only), for push/pull tests without a network.

It implements the routes that huggingface_hub's ``create_repo`` / ``upload_folder`` /
``hf_hub_download`` / ``snapshot_download`` and transformers' ``from_pretrained`` use, for model
repositories, with files kept in memory. Point a process at it with ``HF_ENDPOINT=hub.url``.
No authentication, no LFS / xet: every file is uploaded inline ("regular" upload mode).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.sha = "0" * 40

    def commit(self):
        digest = hashlib.sha1(
            json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in self.files.items())).encode()
        )
        self.sha = digest.hexdigest()


class FakeHub:
    def __init__(self):
        self.repos: dict[str, _Repo] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, body=b"", headers=None, content_type="application/json"):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self):
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                if path == "/api/repos/create":
                    data = json.loads(self._body() or b"{}")
                    repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    if repo_id in hub.repos:
                        return self._send(
                            409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}
                        )
                    hub.repos[repo_id] = _Repo()
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":
                    self._body()
                    return self._send(200, {"errors": [], "warnings": []})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if m and m.group(1) in hub.repos:
                    repo = hub.repos[m.group(1)]
                    if m.group(2) == "preupload":
                        files = json.loads(self._body())["files"]
                        return self._send(
                            200,
                            {
                                "files": [
                                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                    for f in files
                                ]
                            },
                        )
                    for line in self._body().decode().splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        value = item.get("value", {})
                        if item.get("key") == "file":
                            repo.files[value["path"]] = base64.b64decode(value["content"])
                        elif item.get("key") == "deletedFile":
                            repo.files.pop(value["path"], None)
                    repo.commit()
                    return self._send(
                        200,
                        {
                            "commitUrl": f"{hub.url}/{m.group(1)}/commit/{repo.sha}",
                            "commitOid": repo.sha,
                            "pullRequestUrl": None,
                        },
                    )
                return self._send(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                if path == "/api/whoami-v2":
                    return self._send(200, {"type": "user", "name": "tester", "orgs": [], "auth": {}})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    return self._send(
                        200,
                        {
                            "id": m.group(1),
                            "modelId": m.group(1),
                            "sha": repo.sha,
                            "private": False,
                            "siblings": [{"rfilename": f} for f in sorted(repo.files)],
                        },
                    )
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    prefix = (m.group(3) or "").strip("/")
                    entries = [
                        {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                        for f, b in sorted(repo.files.items())
                        if not prefix or f.startswith(prefix + "/")
                    ]
                    return self._send(200, entries)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    repo = hub.repos.get(m.group(1))
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                    data = repo.files.get(m.group(3))
                    if data is None:
                        return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                    etag = '"' + hashlib.sha1(data).hexdigest() + '"'
                    return self._send(200, data, {"X-Repo-Commit": repo.sha, "ETag": etag}, "application/octet-stream")
                return self._send(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
