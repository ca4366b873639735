"""A local stand-in for the Hugging Face Hub's HTTP API, for tests: the real Hub is not reachable
from the machines these tests run on, so they point `HF_ENDPOINT` at this server instead.

It answers exactly the calls `find-datasets` and `use-dataset` make through huggingface_hub, with
the response shapes huggingface_hub's hf_api.py parses into `DatasetInfo` (id, author, sha,
lastModified, createdAt, private, gated, disabled, downloads, likes, tags, cardData, siblings):

- `GET /api/datasets?search=&filter=&sort=&limit=&full=`  HfApi.list_datasets. Like the Hub, the
  listing never includes `siblings` (huggingface_hub issue #1814); `cardData` only with full=true.
- `GET /api/datasets/<owner>/<name>` and `.../revision/<rev>`  HfApi.dataset_info; an unknown id
  answers 401 with `X-Error-Code: RepoNotFound`, an unknown revision 404 `RevisionNotFound`, as the Hub does.
- `GET /datasets/<owner>/<name>/resolve/<rev>/<path>`  a file's bytes, honouring `Range`.

and, so that `prepare` can then read a pinned dataset with `datasets.load_dataset` (hf_hub_download
and HfFileSystem underneath): `HEAD` of the same resolve URLs (X-Repo-Commit, a per-file ETag;
404 `EntryNotFound` for files the repo lacks), `GET /api/datasets/<id>/tree/<rev>[/<folder>]` and
`POST /api/datasets/<id>/paths-info/<rev>`.

Every request is recorded in `FakeHub.requests` (path + query) so tests can check what was asked.
Search matches like the Hub's: every word of the query must occur in the id (case-insensitive).
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

BITEXT = "bitext/Bitext-customer-support-llm-chatbot-training-dataset"
BITEXT_FILE = "Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.csv"
TICKETS = "acme/support-tickets-routing"
CHATS = "someone/customer-support-chats"
MULTI = "polyglot/customer-support-intents"


def _sha(n: int) -> str:
    """A commit sha (40 hex digits) that is easy to recognise in assertions."""
    return f"{n:02x}" * 20


def bitext_csv(rows: int = 400) -> bytes:
    """A CSV shaped like the Bitext file: flags,instruction,category,intent,response (11 categories)."""
    categories = ["ACCOUNT", "CANCEL", "CONTACT", "DELIVERY", "FEEDBACK", "INVOICE", "ORDER", "PAYMENT",
                  "REFUND", "SHIPPING", "SUBSCRIPTION"]
    lines = ["flags,instruction,category,intent,response"]
    for i in range(rows):
        cat = categories[i % len(categories)]
        lines.append(f'B,"question {i} about my {cat.lower()}, please",{cat},{cat.lower()}_intent_{i % 3},'
                     f'"Thanks for reaching out about {cat.lower()}. Here is what to do: step {i}."')
    return ("\n".join(lines) + "\n").encode()


def sample_datasets() -> dict[str, dict]:
    """Four datasets a search for "customer support" finds, each exercising one case:
    no card features (columns from the CSV header), full card features, no licence + no usable
    columns, and several subsets."""
    return {
        BITEXT: {
            "info": {
                "_id": "6548b9c57d0f4f1b2a3c4d5e", "id": BITEXT, "author": "bitext", "sha": _sha(1),
                "lastModified": "2024-07-18T17:31:01.000Z", "createdAt": "2023-11-06T10:07:33.000Z",
                "private": False, "gated": False, "disabled": False, "downloads": 8123, "likes": 231,
                "tags": ["task_categories:question-answering", "task_categories:table-question-answering",
                         "language:en", "license:cdla-sharing-1.0", "size_categories:10K<n<100K",
                         "format:csv", "modality:text", "library:datasets", "library:pandas", "region:us"],
                "description": "Bitext - Customer Service Tagged Training Dataset for LLM-based Virtual Assistants",
                "cardData": {"license": "cdla-sharing-1.0",
                             "task_categories": ["question-answering", "table-question-answering"],
                             "language": ["en"], "tags": ["customer-support", "llm", "chatbot"],
                             "pretty_name": "Bitext - Customer Service Tagged Training Dataset",
                             "size_categories": ["10K<n<100K"]},
                "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": BITEXT_FILE}, {"rfilename": "README.md"}],
                "usedStorage": 19181436,
            },
            "files": {BITEXT_FILE: bitext_csv(), "README.md": b"---\nlicense: cdla-sharing-1.0\n---\n# Bitext\n"},
        },
        TICKETS: {
            "info": {
                "_id": "65f0c0ffee0000000000aaaa", "id": TICKETS, "author": "acme", "sha": _sha(2),
                "lastModified": "2025-02-03T09:00:00.000Z", "createdAt": "2024-03-12T08:00:00.000Z",
                "private": False, "gated": False, "disabled": False, "downloads": 4210, "likes": 17,
                "tags": ["task_categories:text-classification", "task_ids:multi-class-classification",
                         "language:en", "language:de", "license:mit", "size_categories:10K<n<100K",
                         "format:parquet", "modality:text", "library:datasets", "region:us"],
                "cardData": {
                    "license": "mit", "language": ["en", "de"], "task_categories": ["text-classification"],
                    "size_categories": ["10K<n<100K"],
                    "configs": [{"config_name": "default", "data_files": [
                        {"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}]}],
                    "dataset_info": {
                        "features": [
                            {"name": "ticket_id", "dtype": "string"},
                            {"name": "subject", "dtype": "string"},
                            {"name": "body", "dtype": "string"},
                            {"name": "queue", "dtype": {"class_label": {"names": {
                                "0": "billing", "1": "technical", "2": "returns", "3": "sales", "4": "general"}}}},
                            {"name": "priority", "dtype": "string"}],
                        "splits": [{"name": "train", "num_bytes": 6_512_304, "num_examples": 16000},
                                   {"name": "test", "num_bytes": 1_630_112, "num_examples": 4000}],
                        "download_size": 4_120_331, "dataset_size": 8_142_416},
                },
                "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"},
                             {"rfilename": "data/test-00000-of-00001.parquet"},
                             {"rfilename": "data/train-00000-of-00001.parquet"}],
            },
            "files": {},
        },
        CHATS: {
            "info": {
                "_id": "6600000000000000000bbbb1", "id": CHATS, "author": "someone", "sha": _sha(3),
                "lastModified": "2024-11-30T22:10:00.000Z", "createdAt": "2024-11-01T22:10:00.000Z",
                "private": False, "gated": False, "disabled": False, "downloads": 950, "likes": 3,
                "tags": ["size_categories:1K<n<10K", "format:parquet", "modality:text", "region:us"],
                "cardData": {
                    "dataset_info": {
                        "features": [{"name": "conversation_id", "dtype": "string"},
                                     {"name": "messages", "list": [{"name": "role", "dtype": "string"},
                                                                   {"name": "content", "dtype": "string"}]}],
                        "splits": [{"name": "train", "num_bytes": 2_000_000, "num_examples": 5000}]},
                },
                "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"},
                             {"rfilename": "data/train-00000-of-00001.parquet"}],
            },
            "files": {},
        },
        MULTI: {
            "info": {
                "_id": "6700000000000000000cccc1", "id": MULTI, "author": "polyglot", "sha": _sha(4),
                "lastModified": "2025-05-05T05:05:05.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                "private": False, "gated": False, "disabled": False, "downloads": 120, "likes": 1,
                "tags": ["task_categories:text-classification", "language:en", "language:fr",
                         "license:apache-2.0", "size_categories:1K<n<10K", "region:us"],
                "cardData": {
                    "license": "apache-2.0", "language": ["en", "fr"], "task_categories": ["text-classification"],
                    "configs": [{"config_name": "en", "data_files": [{"split": "train", "path": "en/train-*"}]},
                                {"config_name": "fr", "data_files": [{"split": "train", "path": "fr/train-*"}]}],
                    "dataset_info": [
                        {"config_name": "en", "features": [{"name": "utterance", "dtype": "string"},
                                                           {"name": "intent", "dtype": "string"}],
                         "splits": [{"name": "train", "num_bytes": 100_000, "num_examples": 3000}]},
                        {"config_name": "fr", "features": [{"name": "utterance", "dtype": "string"},
                                                           {"name": "intent", "dtype": "string"}],
                         "splits": [{"name": "train", "num_bytes": 90_000, "num_examples": 2500}]}],
                },
                "siblings": [{"rfilename": "README.md"}, {"rfilename": "en/train-00000-of-00001.parquet"},
                             {"rfilename": "fr/train-00000-of-00001.parquet"}],
            },
            "files": {},
        },
    }


class FakeHub:
    """`with FakeHub() as hub:` serves on hub.url until the block ends."""

    def __init__(self, datasets: dict[str, dict] | None = None) -> None:
        self.datasets = datasets if datasets is not None else sample_datasets()
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ answers

    def listing(self, query: dict[str, list[str]]) -> list[dict]:
        words = " ".join(query.get("search", [])).lower().split()
        filters = query.get("filter", [])
        full = query.get("full", ["false"])[0].lower() == "true"
        hits = [d["info"] for d in self.datasets.values()
                if all(w in d["info"]["id"].lower() for w in words) and all(f in d["info"]["tags"] for f in filters)]
        sort = query.get("sort", [None])[0]
        if sort:
            hits.sort(key=lambda i: i.get(sort) or 0, reverse=True)
        hits = hits[: int(query.get("limit", ["1000"])[0])]
        keep = {"_id", "id", "author", "sha", "lastModified", "createdAt", "private", "gated", "disabled",
                "downloads", "likes", "tags", "description"} | ({"cardData"} if full else set())
        return [{k: v for k, v in info.items() if k in keep} for info in hits]

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                path, query = unquote(parts.path), parse_qs(parts.query)
                hub.requests.append(("HEAD " if head else "") + self.path)
                if path == "/api/datasets":
                    return self._json(200, hub.listing(query))
                if path.startswith("/api/datasets/"):
                    rest = path[len("/api/datasets/"):].split("/")
                    repo_id = "/".join(rest[:2])
                    if rest[2:3] == ["tree"]:
                        return self._tree(repo_id, rest[3], "/".join(rest[4:]))
                    return self._info(repo_id, "/".join(rest[3:]) if rest[2:3] == ["revision"] else None)
                if path.startswith("/datasets/") and "/resolve/" in path:
                    repo_id, _, tail = path[len("/datasets/"):].partition("/resolve/")
                    revision, _, filename = tail.partition("/")
                    return self._file(repo_id, revision, filename, head)
                self._json(404, {"error": "Sorry, we can't find the page you are looking for."})

            def do_POST(self) -> None:  # noqa: N802
                """paths-info: which of the posted paths exist (HfFileSystem asks before reading)."""
                path = unquote(urlsplit(self.path).path)
                hub.requests.append("POST " + self.path)
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                rest = path[len("/api/datasets/"):].split("/")
                dataset = hub.datasets.get("/".join(rest[:2]))
                if dataset is None or rest[2:3] != ["paths-info"]:
                    return self._json(404, {"error": "Not found"})
                wanted = set(form.get("paths", []))
                self._json(200, [e for e in self._entries(dataset) if e["path"] in wanted])

            def _entries(self, dataset: dict) -> list[dict]:
                files = {n: dataset["files"].get(n, b"") for n in (s["rfilename"] for s in dataset["info"]["siblings"])}
                entries = [{"type": "file", "oid": f"{abs(hash(n)):040x}"[:40], "size": len(data), "path": n}
                           for n, data in sorted(files.items())]
                folders = sorted({str(p) for n in files for p in PurePosixPath(n).parents if str(p) != "."})
                return [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in folders] + entries

            def _tree(self, repo_id: str, revision: str, folder: str) -> None:
                """list_repo_tree: the files under `folder` (recursive=true: all depths)."""
                dataset = hub.datasets.get(repo_id)
                if dataset is None:
                    return self._json(401, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0] == "true"
                prefix = f"{folder}/" if folder else ""
                entries = [e for e in self._entries(dataset) if e["path"].startswith(prefix)
                           and (recursive or "/" not in e["path"][len(prefix):])]
                if folder and not entries:
                    return self._json(404, {"error": f"Entry not found: {folder}"}, {"X-Error-Code": "EntryNotFound"})
                self._json(200, entries)

            def _info(self, repo_id: str, revision: str | None) -> None:
                dataset = hub.datasets.get(repo_id)
                if dataset is None:
                    return self._json(401, {"error": "Repository not found"},
                                      {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
                if revision not in (None, "main", dataset["info"]["sha"]):
                    return self._json(404, {"error": f"Invalid rev id: {revision}"},
                                      {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {revision}"})
                self._json(200, dataset["info"])

            def _file(self, repo_id: str, revision: str, filename: str, head: bool = False) -> None:
                dataset = hub.datasets.get(repo_id)
                if dataset is None or filename not in dataset["files"]:
                    return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                data, status = dataset["files"][filename], 200
                ranged = self.headers.get("Range", "")
                if ranged.startswith("bytes="):
                    start, _, end = ranged[len("bytes="):].partition("-")
                    data, status = data[int(start): int(end) + 1 if end else None], 206
                self.send_response(status)
                self.send_header("Content-Type", "text/csv" if filename.endswith(".csv") else "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", dataset["info"]["sha"])
                self.send_header("ETag", f'"{hashlib.sha1(dataset["files"][filename]).hexdigest()}"')   # per file, as on the Hub
                self.end_headers()
                if not head:
                    self.wfile.write(data)

            def _json(self, status: int, payload, headers: dict | None = None) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler
