"""A small stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1, for download tests.

It implements what `hf_hub_download` uses, with the Hub's semantics:
- GET  /api/models/{repo}[/revision/{rev}]   model info: id, sha (the commit), siblings;
- HEAD/GET /{repo}/resolve/{rev}/{path}      small files: 200 with ETag, X-Repo-Commit and
  Content-Length; large (binary) files: 302 to a CDN host with X-Linked-Etag (the sha256),
  X-Linked-Size and X-Repo-Commit, as the Hub does for LFS files;
- GET  /cdn/{sha256}                          the bytes, with Range support (resumed downloads);
- errors with the Hub's X-Error-Code header: RepoNotFound, RevisionNotFound, EntryNotFound;
- POST /api/validate-yaml (the card's front matter must parse as a YAML mapping), /api/repos/create,
  /api/models/{repo}/preupload/{rev} and /api/models/{repo}/commit/{rev}:
  uploads, with every file declared "regular" so the commit carries the bytes inline (the Hub
  would send large files through LFS or Xet, which this server does not implement).

The CDN lives on "localhost" while the API is on "127.0.0.1", so the client treats it as another
host (it does not follow the HEAD redirect), as it would for the real CDN.

Faults for tests: `corrupt` (paths served with one byte flipped), `truncate` ({path: times}: close
the connection halfway through the body that many times), `status` ({path: code}). `ranges` records
each (path, first byte) a client asked for with a Range header, so a test can tell a resumed
transfer from one that started over.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BINARY = (".safetensors", ".onnx", ".tflite", ".ort")


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo -> {"refs": {name: sha}, "commits": {sha: {path: bytes}}}
        self.corrupt: set[str] = set()
        self.truncate: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.requests: list[str] = []
        self.ranges: list[tuple[str, int]] = []
        self.validated: list[dict] = []  # model-card front matter that /api/validate-yaml accepted
        self._server: ThreadingHTTPServer | None = None

    def add_commit(self, repo: str, files: dict[str, bytes], ref: str = "main") -> str:
        sha = hashlib.sha1(
            json.dumps(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in files.items())).encode()
            + repo.encode()
            + str(len(self.repos.get(repo, {}).get("commits", {}))).encode()
        ).hexdigest()
        r = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        r["commits"][sha] = dict(files)
        r["refs"][ref] = sha
        return sha

    def add_folder(self, repo: str, folder: Path, ref: str = "main") -> str:
        return self.add_commit(
            repo,
            {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()},
            ref,
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, body=False)

            def do_GET(self) -> None:
                hub._handle(self, body=True)

            def do_POST(self) -> None:
                hub._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- request handling ---------------------------------------------------------------------

    def _blobs(self) -> dict[str, tuple[str, bytes]]:
        return {
            hashlib.sha256(b).hexdigest(): (p, b)
            for r in self.repos.values()
            for c in r["commits"].values()
            for p, b in c.items()
        }

    def _handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append(f"{h.command} {h.path}")
        parts = h.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._info(
                h, "/".join(parts[2:4]), parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            )
        if parts[0] == "cdn" and len(parts) == 2:
            blob = self._blobs().get(parts[1])
            if blob is None:
                return self._error(h, 404, "EntryNotFound")
            return self._send(h, *blob, body=body)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(h, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._error(h, 404, "RepoNotFound")

    # --- uploads: what HfApi.create_repo and upload_folder use, with every file sent inline ----------

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(f"POST {h.path}")
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        if not h.headers.get("Authorization", "").startswith("Bearer "):
            return self._error(h, 401, None)
        parts = h.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:  # the model card's front matter must parse as YAML
            import yaml

            content = json.loads(body)["content"]
            try:
                meta = yaml.safe_load(content.split("---\n")[1]) if content.startswith("---\n") else None
                ok = isinstance(meta, dict)
            except (yaml.YAMLError, IndexError):
                ok = False
            if not ok:
                data = json.dumps({"errors": [{"message": "front matter is not a YAML mapping"}]}).encode()
                h.send_response(400)
                h.send_header("Content-Length", str(len(data)))
                h.end_headers()
                h.wfile.write(data)
                return None
            self.validated.append(meta)
            return self._json(h, {"warnings": []})
        if parts[:3] == ["api", "repos", "create"]:
            req = json.loads(body)
            repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            self.repos.setdefault(repo, {"refs": {}, "commits": {}})
            return self._json(h, {"url": f"{self.url}/{repo}", "name": repo})
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "preupload":
            files = json.loads(body)["files"]
            # "regular" for every file: the commit then carries the bytes inline (no LFS or Xet upload)
            return self._json(
                h,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                },
            )
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "commit":
            import base64

            repo, rev = "/".join(parts[2:4]), parts[5]
            r = self.repos.get(repo)
            if r is None:
                return self._error(h, 404, "RepoNotFound")
            files = dict(r["commits"].get(r["refs"].get(rev), {}))
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] != "header":
                    return self._error(h, 400, None)
            sha = self.add_commit(repo, files, ref=rev)
            return self._json(
                h, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None}
            )
        self._error(h, 404, None)

    def _json(self, h, obj: dict) -> None:
        data = json.dumps(obj).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _commit(self, h, repo: str, rev: str) -> str | None:
        r = self.repos.get(repo)
        if r is None:
            self._error(h, 404, "RepoNotFound")
            return None
        sha = r["refs"].get(rev, rev if rev in r["commits"] else None)
        if sha is None:
            self._error(h, 404, "RevisionNotFound")
        return sha

    def _info(self, h, repo: str, rev: str) -> None:
        sha = self._commit(h, repo, rev)
        if sha:
            siblings = [{"rfilename": p} for p in sorted(self.repos[repo]["commits"][sha])]
            data = json.dumps(
                {"id": repo, "modelId": repo, "sha": sha, "siblings": siblings, "private": False}
            ).encode()
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

    def _resolve(self, h, repo: str, rev: str, path: str, body: bool) -> None:
        if path in self.status:
            return self._error(h, self.status[path], None)
        sha = self._commit(h, repo, rev)
        if not sha:
            return
        data = self.repos[repo]["commits"][sha].get(path)
        if data is None:
            return self._error(h, 404, "EntryNotFound")
        if path.endswith(BINARY):
            digest = hashlib.sha256(data).hexdigest()
            h.send_response(302)
            h.send_header("Location", f"http://localhost:{self.port}/cdn/{digest}")
            h.send_header("X-Repo-Commit", sha)
            h.send_header("X-Linked-Etag", f'"{digest}"')
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._send(h, path, data, body=body, commit=sha)

    def _send(self, h, path: str, data: bytes, body: bool, commit: str | None = None) -> None:
        if path in self.corrupt and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            self.ranges.append((path, start))
        part = data[start:]
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(part)))
        h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if not body:
            return
        if self.truncate.get(path, 0) > 0:
            self.truncate[path] -= 1
            h.wfile.write(part[: len(part) // 2])
            h.wfile.flush()
            h.close_connection = True
            import socket

            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(part)

    def _error(self, h, code: int, error_code: str | None) -> None:
        data = json.dumps({"error": error_code or f"HTTP {code}"}).encode()
        h.send_response(code)
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
