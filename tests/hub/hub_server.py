"""A Hugging Face Hub on loopback for tests: the part of the Hub HTTP API that ``huggingface_hub``'s client uses.

The real client (``HfApi``, ``hf_hub_download``, ``transformers``' and PEFT's ``from_pretrained``) talks to it
through ``HF_ENDPOINT``, so pushing and pulling are tested end to end without a network and without mocking the
client. Repositories live in memory; every commit is a full snapshot, so any branch or commit sha can be served.

    POST /api/repos/create                              create a model repository (with a Hub-like .gitattributes)
    GET  /api/whoami-v2                                 the token's user
    GET  /api/agent-harnesses                           (empty) registry the client reads for its user agent
    POST /api/validate-yaml                             README metadata check done before each commit
    GET  /api/models/{repo}[/revision/{rev}]            repository info
    GET  /api/models/{repo}/tree/{rev}[/{path}]         list files and folders
    POST /api/models/{repo}/paths-info/{rev}            info on given paths
    POST /api/models/{repo}/branch/{branch}             create a branch
    POST /api/models/{repo}/preupload/{rev}             regular or LFS upload, per file
    POST /{repo}.git/info/lfs/objects/batch             LFS batch API ("basic" transfer)
    PUT  /lfs-objects/{oid}                             LFS upload target
    POST /api/models/{repo}/commit/{rev}                the ndjson commit payload
    HEAD|GET /{repo}/resolve/{rev}/{path}               file download, with the Hub's metadata headers

Xet storage is not implemented: run the client with ``HF_HUB_DISABLE_XET=1`` (it then uses LFS). Requests with an
unknown route get a 404 and are recorded in ``unhandled``, so a test can tell a missing route from a missing file.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_PATTERNS = ("*.bin", "*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.npy",
                "*.npz", "*.pkl", "*.zip", "*.gz", "*.tar", "*tfevents*")
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores larger files with LFS whatever their name
_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A file's content; LFS files are addressed by their sha256, others by their git blob id (as on the Hub)."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def git_oid(self) -> str:
        return git_blob_oid(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "path": path, "size": len(self.data), "oid": self.git_oid}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return entry


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, Blob]
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def commit_of(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


class HubError(Exception):
    """An error answer: status, message, and the ``X-Error-Code`` the client turns into its own exception types."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubServer:
    """The in-memory Hub; ``start()`` serves it on ``127.0.0.1`` on a free port (``url``), ``stop()`` ends it."""

    def __init__(self, token: str = "hf_test_token", user: str = "test-user"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None

    # Lifecycle -------------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every repository and request, so each test starts from an empty Hub (reruns in one session too)."""
        with self.lock:
            self.repos.clear()
            self.lfs_objects.clear()
            self.requests.clear()
            self.unhandled.clear()

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # What tests inspect ------------------------------------------------------------------------------------------

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path → content of every file at ``revision``."""
        commit = self.repos[repo_id].commit_of(revision)
        return {path: blob.data for path, blob in commit.files.items()}

    def all_pushed_bytes(self, repo_id: str) -> list[tuple[str, bytes]]:
        """Everything ever pushed to ``repo_id``: every file of every commit, paths and commit titles included."""
        repo = self.repos[repo_id]
        items = [("<repo id>", repo_id.encode())]
        for commit in repo.commits.values():
            items.append((f"<commit {commit.oid[:8]} title>", commit.title.encode()))
            for path, blob in commit.files.items():
                items += [(f"<path {path}>", path.encode()), (path, blob.data)]
        return items

    # The API ---------------------------------------------------------------------------------------------------

    def _repo(self, repo_id: str, token: str | None = None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token != self.token):
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.commit_of(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    def _new_commit(self, repo: Repo, branch: str, title: str, files: dict[str, Blob]) -> Commit:
        seed = f"{repo.repo_id}\n{branch}\n{title}\n{next(self._counter)}\n" + "\n".join(
            f"{path}:{blob.git_oid}" for path, blob in sorted(files.items()))
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), title, files, _now())
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def create_repo(self, payload: dict) -> tuple[int, dict]:
        if payload.get("type") not in (None, "model"):
            raise HubError(400, "This test Hub only holds model repositories.")
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        url = f"{self.url}/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": url}
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        repo = self.repos[repo_id] = Repo(repo_id, private, _now())
        self._new_commit(repo, "main", "initial commit", {".gitattributes": Blob(GITATTRIBUTES, lfs=False)})
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def info(self, repo: Repo, revision: str) -> dict:
        commit = self._commit(repo, revision)
        card = _front_matter(commit.files.get("README.md"))
        info = {"_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.created, "private": repo.private,
                "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": card.get("tags", []),
                "siblings": [{"rfilename": path} for path in sorted(commit.files)], "spaces": []}
        for key in ("library_name", "pipeline_tag"):
            if key in card:
                info[key] = card[key]
        if card:
            info["cardData"] = card
        return info

    def tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> list[dict]:
        commit = self._commit(repo, revision)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        if prefix and not any(name.startswith(prefix) for name in commit.files):
            raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
        entries, folders = [], set()
        for name, blob in sorted(commit.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(blob.tree_entry(name))
        entries += [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
                    for folder in sorted(folders)]
        return entries

    def preupload(self, repo: Repo, revision: str, payload: dict) -> dict:
        commit = self._commit(repo, revision)
        patterns = [line.split()[0] for line in commit.files.get(".gitattributes", Blob(b"", False)).data.decode()
                    .splitlines() if "filter=lfs" in line]
        files = []
        for item in payload["files"]:
            path, sample = item["path"], base64.b64decode(item["sample"])
            lfs = (item["size"] >= LFS_THRESHOLD or b"\0" in sample
                   or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) for pattern in patterns))
            existing = commit.files.get(path)
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return {"files": files, "commitOid": commit.oid}

    def lfs_batch(self, payload: dict) -> dict:
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "Only the 'basic' LFS upload transfer is implemented.")
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
            if item["oid"] not in self.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-objects/{item['oid']}", "header": {}}}
            objects.append(entry)
        return {"transfer": "basic", "objects": objects}

    def lfs_upload(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "The uploaded content does not match its sha256.")
        self.lfs_objects[oid] = data

    def commit(self, repo: Repo, revision: str, lines: list[dict], create_pr: bool) -> dict:
        if create_pr:
            raise HubError(400, "Pull requests are not implemented by the test Hub.")
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        if header.get("parentCommit") and header["parentCommit"] != head.oid:
            raise HubError(412, "A commit has happened since the parent commit.")
        files = dict(head.files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
            elif key == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded.")
                files[value["path"]] = Blob(self.lfs_objects[value["oid"]], lfs=True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {path: blob for path, blob in files.items() if not path.startswith(folder)}
            elif key != "header":
                raise HubError(400, f"Commit operation {key!r} is not implemented by the test Hub.")
        commit = self._new_commit(repo, branch, header.get("summary", ""), files)
        return {"success": True, "commitOid": commit.oid, "commitUrl": f"{self.url}/{repo.repo_id}/commit/{commit.oid}",
                "hookOutput": ""}


def _front_matter(blob: Blob | None) -> dict:
    if blob is None:
        return {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", blob.data.decode("utf-8", "replace"), re.DOTALL)
    return (yaml.safe_load(match.group(1)) or {}) if match else {}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the client's connection pool expects; bodies by Content-Length or chunked."""

    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format, *args):
        pass

    # Plumbing --------------------------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None,
              content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    @property
    def _token(self) -> str | None:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer "):] if value.startswith("Bearer ") else None

    def _require_write(self) -> None:
        if self._token != self.server_hub.token:
            raise HubError(401, "Invalid credentials in Authorization header")

    # Dispatch --------------------------------------------------------------------------------------------------

    def do_HEAD(self):
        self._dispatch()

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def _dispatch(self):
        hub = self.server_hub
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self._body() if self.command in ("POST", "PUT") else b""
        hub.requests.append((self.command, url.path))
        try:
            with hub.lock:
                for method, pattern, handler in self.ROUTES:
                    match = re.fullmatch(pattern, url.path)  # groups are unquoted by the handlers
                    if self.command in method and match:
                        return getattr(self, handler)(match, query, body)
                hub.unhandled.append((self.command, url.path))
                raise HubError(404, f"{self.command} {url.path} is not implemented by the test Hub.")
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            if error.commit:  # lets the client cache that the file does not exist at this commit
                headers["X-Repo-Commit"] = error.commit
            self._json(error.status, {"error": error.message}, headers)

    ROUTES = (
        (("POST",), r"/api/repos/create", "_create_repo"),
        (("GET",), r"/api/whoami-v2", "_whoami"),
        (("GET",), r"/api/agent-harnesses", "_agent_harnesses"),
        (("POST",), r"/api/validate-yaml", "_validate_yaml"),
        (("GET",), rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?", "_info"),
        (("GET",), rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "_tree"),
        (("POST",), rf"/api/models/{_REPO}/paths-info/(?P<rev>[^/]+)", "_paths_info"),
        (("POST",), rf"/api/models/{_REPO}/branch/(?P<branch>.+)", "_branch"),
        (("POST",), rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "_preupload"),
        (("POST",), rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "_commit"),
        (("POST",), rf"/{_REPO}\.git/info/lfs/objects/batch", "_lfs_batch"),
        (("PUT",), r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "_lfs_upload"),
        (("HEAD", "GET"), rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "_resolve"),
    )

    # Handlers --------------------------------------------------------------------------------------------------

    def _create_repo(self, match, query, body):
        self._require_write()
        status, payload = self.server_hub.create_repo(json.loads(body))
        self._json(status, payload)

    def _whoami(self, match, query, body):
        self._require_write()
        self._json(200, {"type": "user", "name": self.server_hub.user, "fullname": "Test User", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}}})

    def _agent_harnesses(self, match, query, body):
        self._json(200, {"standardEnvVars": [], "harnesses": {}})  # the client's user-agent telemetry: none here

    def _validate_yaml(self, match, query, body):
        try:
            _front_matter(Blob(json.loads(body)["content"].encode(), lfs=False))
        except yaml.YAMLError as error:
            return self._json(400, {"errors": [{"message": str(error)}], "warnings": []})
        self._json(200, {"errors": [], "warnings": []})

    def _info(self, match, query, body):
        repo = self.server_hub._repo(match["repo"], self._token)
        self._json(200, self.server_hub.info(repo, match["rev"] or "main"))

    def _tree(self, match, query, body):
        repo = self.server_hub._repo(match["repo"], self._token)
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        self._json(200, self.server_hub.tree(repo, match["rev"], unquote(match["path"] or ""), recursive))

    def _paths_info(self, match, query, body):
        hub = self.server_hub
        repo = hub._repo(match["repo"], self._token)
        commit = hub._commit(repo, match["rev"])
        form = parse_qs(body.decode())
        paths = form.get("paths", []) or json.loads(body or b"{}").get("paths", [])
        entries = [commit.files[path].tree_entry(path) for path in paths if path in commit.files]
        folders = [path for path in paths if any(name.startswith(path + "/") for name in commit.files)]
        entries += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
                    for path in folders]
        self._json(200, entries)

    def _branch(self, match, query, body):
        self._require_write()
        hub = self.server_hub
        repo = hub._repo(match["repo"], self._token)
        branch = unquote(match["branch"])
        if branch in repo.branches:
            raise HubError(409, f"Branch {branch} already exists")
        start = json.loads(body or b"{}").get("startingPoint") or "main"
        repo.branches[branch] = hub._commit(repo, start).oid
        self._json(200, {})

    def _preupload(self, match, query, body):
        self._require_write()
        repo = self.server_hub._repo(match["repo"], self._token)
        self._json(200, self.server_hub.preupload(repo, match["rev"], json.loads(body)))

    def _commit(self, match, query, body):
        self._require_write()
        repo = self.server_hub._repo(match["repo"], self._token)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        self._json(200, self.server_hub.commit(repo, match["rev"], lines, query.get("create_pr") == ["1"]))

    def _lfs_batch(self, match, query, body):
        self._require_write()
        self.server_hub._repo(match["repo"], self._token)
        self._send(200, json.dumps(self.server_hub.lfs_batch(json.loads(body))).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_upload(self, match, query, body):
        self.server_hub.lfs_upload(match["oid"], body)
        self._send(200)

    def _resolve(self, match, query, body):
        hub = self.server_hub
        repo = hub._repo(unquote(match["repo"]), self._token)
        commit = hub._commit(repo, match["rev"])
        blob = commit.files.get(unquote(match["path"]))
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", commit=commit.oid)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged and self.command == "GET":
            start = int(ranged[1])
            end = int(ranged[2]) + 1 if ranged[2] else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data, status = data[start:end], 206
        self._send(status, data, headers, content_type="application/octet-stream")
