"""A small stand-in for the Hugging Face Hub HTTP API, enough for huggingface_hub's HfApi to create
dataset repos and branches, list and download files, and commit: files inline ("regular") or, with
`lfs=True`, parquet/png through the git-LFS batch API and a PUT to a storage URL (the legacy LFS
path huggingface_hub takes when Xet is disabled). Tests point HF_ENDPOINT (or HfApi(endpoint=...))
at it and inspect `requests` and `repos` afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Commit:
    oid: str
    summary: str
    description: str
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    heads: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    commits: list[Commit] = field(default_factory=list)


def git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """Run with `with FakeHub(token) as hub:`; `hub.url` is the endpoint."""

    def __init__(self, token: str = "hf_test_token", lfs: bool = False):
        self.token = token
        self.lfs = lfs
        self.lfs_store: dict[str, bytes] = {}  # sha256 -> content (the "S3" side)
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.fail: dict[str, list[int]] = {}  # request kind ("commit", "create", ...) -> statuses to answer first
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # shutdown waits one poll
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].branches[branch]

    def kinds(self) -> list[str]:
        return [_kind(r.method, r.path) for r in self.requests]

    # --- request handling ----------------------------------------------------------------------

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                parts = urlsplit(self.path)
                body = self._body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(self.command, unquote(parts.path), parse_qs(parts.query), headers, body)
                with hub._lock:
                    hub.requests.append(req)
                    status, headers, payload = hub._route(req)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _handle

        return Handler

    def _route(self, req: Request) -> tuple[int, dict[str, str], bytes]:
        kind = _kind(req.method, req.path)
        pending = self.fail.get(kind)
        if pending:
            return _json(pending.pop(0), {"error": "injected failure"})
        if req.path == "/api/validate-yaml":
            try:
                yaml.safe_load(json.loads(req.body)["content"].split("---")[1])
                return _json(200, {"errors": [], "warnings": []})
            except Exception as e:  # noqa: BLE001 - report any YAML problem as the Hub does
                return _json(400, {"errors": [{"message": str(e)}]})
        if kind == "lfs-upload":  # a pre-signed storage URL: no Hub token involved
            oid = req.path.rsplit("/", 1)[1]
            if hashlib.sha256(req.body).hexdigest() != oid:
                return _json(400, {"error": "content does not match its sha256"})
            self.lfs_store[oid] = req.body
            return _json(200, {})
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"error": "Invalid credentials in Authorization header"}, {"X-Error-Code": "Unauthorized"})
        if kind == "create":
            data = json.loads(req.body)
            repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            if repo_id in self.repos:
                return _json(409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo_id}"})
            self.repos[repo_id] = Repo(private=bool(data.get("private")) or data.get("visibility") == "private")
            return _json(200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id})
        if req.path.startswith("/api/datasets/"):
            return self._api(req, kind)
        if kind == "lfs-batch":
            objects = []
            for obj in json.loads(req.body)["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.lfs_store:
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
                objects.append(entry)
            return _json(200, {"transfer": "basic", "objects": objects})
        if req.path.startswith("/datasets/") and "/resolve/" in req.path:
            repo_id, _, rest = req.path[len("/datasets/") :].partition("/resolve/")
            branch, _, file_path = rest.partition("/")
            files = self._branch(repo_id, branch)
            if files is None or file_path not in files:
                return _json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            content = files[file_path]
            headers = {"X-Repo-Commit": self.repos[repo_id].heads[branch], "ETag": f'"{git_sha1(content)}"'}
            return 200, headers, content
        return _json(404, {"error": f"no route {req.method} {req.path}"})

    def _branch(self, repo_id: str, branch: str) -> dict[str, bytes] | None:
        repo = self.repos.get(repo_id)
        return None if repo is None else repo.branches.get(branch)

    def _api(self, req: Request, kind: str) -> tuple[int, dict[str, str], bytes]:
        parts = req.path[len("/api/datasets/") :].split("/", 4) + ["", ""]
        repo_id, branch, sub = f"{parts[0]}/{parts[1]}", parts[3], parts[4]
        repo = self.repos.get(repo_id)
        if repo is None:
            return _json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if kind == "branch":
            repo.branches.setdefault(branch, dict(repo.branches["main"]))
            repo.heads.setdefault(branch, repo.heads["main"])
            return _json(200, {})
        files = repo.branches.get(branch)
        if files is None:
            return _json(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
        if kind == "tree":
            items = [tree_item(p, c) for p, c in sorted(files.items()) if not sub or p.startswith(sub.rstrip("/") + "/")]
            return _json(200, items)
        if kind == "revision":
            siblings = [{"rfilename": p} for p in sorted(files)]
            return _json(200, {"id": repo_id, "sha": repo.heads[branch], "private": repo.private, "siblings": siblings})
        if kind == "preupload":
            asked = json.loads(req.body)["files"]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if self.lfs and f["path"].endswith(LFS_SUFFIXES) else "regular",
                    "shouldIgnore": False,
                    "oid": git_sha1(files[f["path"]]) if f["path"] in files else None,
                }
                for f in asked
            ]
            return _json(200, {"files": answer, "commitOid": repo.heads[branch]})
        if kind == "commit":
            return self._commit(repo, repo_id, branch, req.body)
        return _json(404, {"error": f"no route {req.method} {req.path}"})

    def _commit(self, repo: Repo, repo_id: str, branch: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        files = repo.branches[branch]
        header: dict = {}
        added, deleted = [], []
        for line in body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_store:
                    return _json(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                files[value["path"]] = self.lfs_store[value["oid"]]
                added.append(value["path"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    return _json(404, {"error": "A file with this name doesn't exist"}, {"X-Error-Code": "EntryNotFound"})
                del files[value["path"]]
                deleted.append(value["path"])
            else:
                return _json(400, {"error": f"unsupported commit item {key}"})
        oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}{header}".encode()).hexdigest()
        repo.heads[branch] = oid
        repo.commits.append(Commit(oid, header.get("summary", ""), header.get("description", ""), added, deleted))
        return _json(200, {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid})


LFS_SUFFIXES = (".parquet", ".png")  # what the Hub's default .gitattributes stores in LFS


def tree_item(path: str, content: bytes) -> dict:
    """A file as the Hub's tree API lists it: LFS-tracked files carry their sha256 in `lfs`."""
    item = {"type": "file", "path": path, "oid": git_sha1(content), "size": len(content)}
    if path.endswith(LFS_SUFFIXES):
        sha256 = hashlib.sha256(content).hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n".encode()
        item["oid"] = git_sha1(pointer)
        item["lfs"] = {"oid": sha256, "size": len(content), "pointerSize": len(pointer)}
    return item


def _kind(method: str, path: str) -> str:
    """A short name for a request: create, tree, revision, preupload, commit, branch, resolve, validate,
    lfs-batch, lfs-upload."""
    if path == "/api/repos/create":
        return "create"
    if path == "/api/validate-yaml":
        return "validate"
    if path.endswith(".git/info/lfs/objects/batch"):
        return "lfs-batch"
    if path.startswith("/lfs-upload/"):
        return "lfs-upload"
    if path.startswith("/api/datasets/"):
        parts = path.split("/")
        return parts[5] if len(parts) > 5 else "repo"
    if "/resolve/" in path:
        return "resolve"
    return f"{method} {path}"


def _json(status: int, data, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode()
