"""A local stand-in for the Hugging Face Hub's *upload* API, for the publishing tests.

The real Hub cannot be reached from the machines these tests run on, so the tests start this
server on 127.0.0.1 and point `HF_ENDPOINT` at it. It answers exactly the calls that
`HfApi.create_repo` and `HfApi.create_commit` make (huggingface_hub 1.x/2.x, legacy LFS path),
with the response shapes huggingface_hub parses:

- `GET  /api/agent-harnesses`                               public, unauthenticated: a registry huggingface_hub
                                                            fetches (at most daily) to build its user agent
- `POST /api/repos/create`                                  create a repo; 409 when it exists
- `POST /api/validate-yaml`                                 the README's metadata (create_commit checks it first)
- `GET  /api/{models,spaces}/<id>[/revision/<rev>]`         repo info (sha, siblings)
- `POST /api/{models,spaces}/<id>/preupload/<rev>`          upload mode per file (lfs | regular) + the remote oid
                                                            (sha256 for LFS, git blob sha1 for regular files), which
                                                            is how the client skips unchanged files
- `POST /[spaces/]<id>.git/info/lfs/objects/batch`          LFS batch API (basic transfer): where to PUT each object
- `PUT  /_lfs/<oid>`                                        the object's bytes (checked against its sha256)
- `POST /api/{models,spaces}/<id>/commit/<rev>`             the NDJSON commit: header, file (base64), lfsFile

The Xet transfer protocol (used when `hf_xet` is installed) is a binary CAS protocol not
implemented here: tests set `HF_HUB_DISABLE_XET=1`, which makes huggingface_hub use the LFS
basic transfer above, a path the real Hub still serves.

Authentication: every API call except the LFS PUT and the harness registry needs `Authorization: Bearer <token>`; a wrong
or missing token gets 401. A repo whose name starts with `forbidden` answers 403 on creation,
like a namespace the token cannot write to. Every request is recorded in `requests`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".png", ".jpg", ".parquet")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: dict[str, str] = field(default_factory=dict)          # path -> sha256 for LFS files
    commits: list[dict] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


class FakeHubUploads:
    """Start with `with FakeHubUploads(token) as hub:`; `hub.url` is the HF_ENDPOINT to use."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHubUploads":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    # ------------------------------------------------------------------ handlers
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload=None, headers: dict | None = None) -> None:
                body = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                self._send(status, {"error": message}, {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})})

            def _authorised(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {hub.token}"

            def _dispatch(self, method: str) -> None:
                body = self._body() if method in ("POST", "PUT") else b""
                path = self.path.split("?")[0]
                with hub.lock:
                    hub.requests.append({"method": method, "path": path, "authorised": self._authorised(),
                                         "headers": dict(self.headers), "body_size": len(body)})
                if method == "PUT" and path.startswith("/_lfs/"):
                    return self._lfs_put(path.rsplit("/", 1)[1], body)
                if method == "GET" and path == "/api/agent-harnesses":
                    return self._send(200, {"standardEnvVars": [], "harnesses": {}})
                if not self._authorised():
                    return self._error(401, "Invalid credentials in Authorization header")
                routes = [
                    ("POST", r"/api/repos/create", self._create),
                    ("POST", r"/api/validate-yaml", self._validate_yaml),
                    ("POST", r"/api/(models|spaces)/(.+?)/preupload/([^/]+)", self._preupload),
                    ("POST", r"/api/(models|spaces)/(.+?)/commit/([^/]+)", self._commit),
                    ("GET", r"/api/(models|spaces)/(.+?)/revision/([^/]+)", self._info),
                    ("GET", r"/api/(models|spaces)/([^/]+/[^/]+)", self._info),
                    ("POST", r"/(spaces/)?(.+?)\.git/info/lfs/objects/batch", self._lfs_batch),
                ]
                for verb, pattern, handler in routes:
                    match = re.fullmatch(pattern, path)
                    if verb == method and match:
                        return handler(body, *match.groups())
                self._error(404, f"no route for {method} {path}")

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            # -------------------------------------------------------------- API
            def _find(self, kind: str, repo_id: str) -> Repo | None:
                return hub.repos.get((kind.rstrip("s"), repo_id))

            def _create(self, body: bytes) -> None:
                payload = json.loads(body)
                repo_type = payload.get("type") or "model"
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
                if payload["name"].startswith("forbidden"):
                    return self._error(403, f"You don't have the rights to create a {repo_type} under this namespace")
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                url = f"{hub.url}/{prefix}{repo_id}"
                with hub.lock:
                    if (repo_type, repo_id) in hub.repos:
                        return self._send(409, {"error": "You already created this repo", "url": url})
                    hub.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, payload.get("visibility") == "private",
                                                           payload.get("sdk"))
                self._send(200, {"url": url, "name": repo_id})

            def _validate_yaml(self, body: bytes) -> None:
                content = json.loads(body)["content"]
                match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
                try:
                    data = yaml.safe_load(match.group(1)) if match else None
                except yaml.YAMLError as err:
                    return self._send(400, {"error": f"Invalid YAML: {err}"})
                if not isinstance(data, dict):
                    return self._send(200, {"warnings": [{"message": "empty or missing yaml metadata"}]})
                self._send(200, {"errors": [], "warnings": []})

            def _info(self, body: bytes, kind: str, repo_id: str, revision: str = "main") -> None:
                repo = self._find(kind, repo_id)
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                self._send(200, {"id": repo.repo_id, "sha": repo.sha, "private": repo.private,
                                 "siblings": [{"rfilename": p} for p in sorted(repo.files)]})

            def _preupload(self, body: bytes, kind: str, repo_id: str, revision: str) -> None:
                repo = self._find(kind, repo_id)
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                answers = []
                for item in json.loads(body)["files"]:
                    sample = base64.b64decode(item["sample"])
                    lfs = item["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or item["size"] > 10_000_000
                    answer = {"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                    if item["path"] in repo.files:
                        stored = repo.files[item["path"]]
                        answer["oid"] = repo.lfs.get(item["path"]) if lfs else git_blob_sha1(stored)
                    answers.append(answer)
                self._send(200, {"files": answers, "commitOid": repo.sha})

            def _lfs_batch(self, body: bytes, space_prefix: str | None, repo_id: str) -> None:
                if self._find("spaces" if space_prefix else "models", repo_id) is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                objects = []
                for obj in json.loads(body)["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                    if obj["oid"] not in hub.lfs_objects:
                        entry["actions"] = {"upload": {"href": f"{hub.url}/_lfs/{obj['oid']}"}}
                    objects.append(entry)
                self._send(200, {"transfer": "basic", "objects": objects})

            def _lfs_put(self, oid: str, body: bytes) -> None:
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._error(400, "content does not match its sha256 oid")
                with hub.lock:
                    hub.lfs_objects[oid] = body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _commit(self, body: bytes, kind: str, repo_id: str, revision: str) -> None:
                repo = self._find(kind, repo_id)
                if repo is None:
                    return self._error(404, "Repository not found", "RepoNotFound")
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                changed = []
                with hub.lock:
                    for line in lines:
                        value = line["value"]
                        if line["key"] == "file":
                            repo.files[value["path"]] = base64.b64decode(value["content"])
                            repo.lfs.pop(value["path"], None)
                        elif line["key"] == "lfsFile":
                            if value["oid"] not in hub.lfs_objects:
                                return self._error(422, f"LFS object {value['oid']} was never uploaded")
                            repo.files[value["path"]] = hub.lfs_objects[value["oid"]]
                            repo.lfs[value["path"]] = value["oid"]
                        elif line["key"] in ("deletedFile", "deletedFolder"):
                            repo.files.pop(value["path"], None)
                        else:
                            continue
                        changed.append(value["path"])
                    oid = hashlib.sha1(f"{repo.sha}{header['summary']}{sorted(changed)}".encode()).hexdigest()
                    repo.commits.append({"oid": oid, "summary": header["summary"],
                                         "description": header.get("description", ""), "files": changed})
                prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
                self._send(200, {"commitUrl": f"{hub.url}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid,
                                 "pullRequestUrl": None, "success": True})

        return Handler
