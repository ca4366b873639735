"""Asking the Hugging Face Hub about datasets: answer quickly, or fail at once with one clear message.

huggingface_hub retries network errors and HTTP 429/5xx with exponential backoff (about 30 s in all)
and sets no timeout by default: right for large downloads, wrong for an interactive search. Here
every request gets a short timeout and a transport that turns a network error or an overloaded
Hub into a UserError immediately. HF_HUB_OFFLINE is checked before any request is made.

The endpoint is huggingface_hub's (`HF_ENDPOINT`, default https://huggingface.co); the tests point
it at a local server that answers the same API calls.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable

from hfclf.infra.errors import UserError

OFFLINE_VALUES = {"1", "true", "yes", "on"}


class HubUnreachable(Exception):
    """The Hub did not answer usefully (network error, timeout, 429/5xx). Deliberately not an
    httpx error type, so huggingface_hub's backoff does not retry it."""


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def require_online(action: str) -> None:
    """Refuse at once when the user said there is no network."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in OFFLINE_VALUES:
            raise UserError(f"{action} needs the Hugging Face Hub, but {name} is set: nothing was searched or "
                            f"changed. Unset {name} on a machine that can reach huggingface.co, or set "
                            "data.source in conf/data/default.yaml to a local file.")


def connect(timeout: float):
    """An HfApi whose requests time out after `timeout` seconds and are never retried."""
    from huggingface_hub import HfApi

    for name in ("httpx", "httpx2", "httpcore", "httpcore2"):  # one line per request is noise here
        logging.getLogger(name).setLevel(logging.WARNING)
    _install_fail_fast_client(timeout)
    return HfApi()


def _install_fail_fast_client(timeout: float) -> None:
    from huggingface_hub.utils import _http

    httpx = getattr(_http, "httpx2", None) or getattr(_http, "httpx", None)
    if httpx is None or not hasattr(_http, "set_client_factory"):
        return  # an older huggingface_hub (requests-based): its defaults apply
    host = endpoint()

    class FailFast(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request):
            # list_datasets passes timeout=None per request, which beats a client default: cap it here
            limits = dict(request.extensions.get("timeout") or {})
            request.extensions["timeout"] = {k: min(v, timeout) if v is not None else timeout
                                             for k, v in {"connect": None, "read": None, "write": None,
                                                          "pool": None, **limits}.items()}
            try:
                response = self.inner.handle_request(request)
            except httpx.TimeoutException:
                raise HubUnreachable(f"no answer from {host} within {timeout:g} s") from None
            except httpx.TransportError as err:
                raise HubUnreachable(f"cannot connect to {host} ({_first_line(err)})") from None
            if response.status_code == 429 or response.status_code >= 500:
                response.close()
                raise HubUnreachable(f"{host} answered HTTP {response.status_code}; try again in a few minutes")
            return response

        def close(self) -> None:
            self.inner.close()

    hooks = {"request": [_http.hf_request_event_hook]} if hasattr(_http, "hf_request_event_hook") else {}
    _http.set_client_factory(lambda: httpx.Client(event_hooks=hooks, follow_redirects=True,
                                                  timeout=httpx.Timeout(timeout), transport=FailFast()))


def search(api, query: str, task: str | None, sort: str, limit: int) -> list:
    """Datasets whose id matches `query` (and tagged with `task`), with their card data."""
    return _call(lambda: list(api.list_datasets(search=query, task_categories=task or None, sort=sort,
                                                limit=limit, full=True)), "the dataset search")


def dataset_info(api, repo_id: str, revision: str | None = None, timeout: float | None = None):
    """One dataset's info (card data, files, commit sha); a missing id or revision is a UserError."""
    return _call(lambda: api.dataset_info(repo_id, revision=revision, timeout=timeout), f"dataset '{repo_id}'",
                 repo_id=repo_id, revision=revision)


def read_head(repo_id: str, revision: str, filename: str, max_bytes: int, timeout: float) -> bytes:
    """The first `max_bytes` of a file in a dataset repo (a Range request; the rest is never fetched)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo_id, filename, repo_type="dataset", revision=revision)
    headers = {**build_hf_headers(), "Range": f"bytes=0-{max_bytes - 1}"}

    def fetch() -> bytes:
        chunks, size = [], 0
        with get_session().stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= max_bytes:
                    break
        return b"".join(chunks)[:max_bytes]

    return _call(fetch, f"file '{filename}' of dataset '{repo_id}'", repo_id=repo_id, revision=revision)


def _call(fn, what: str, repo_id: str | None = None, revision: str | None = None):
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        return fn()
    except HubUnreachable as err:
        raise UserError(f"the Hugging Face Hub could not be reached for {what}: {err}. Check your connection "
                        "(and HF_ENDPOINT if you set it), or set HF_HUB_OFFLINE=1 and use a local file.") from None
    except OfflineModeIsEnabled:
        raise UserError(f"{what} needs the Hugging Face Hub, but offline mode is enabled (HF_HUB_OFFLINE).") from None
    except GatedRepoError:
        raise UserError(f"dataset '{repo_id}' is gated: accept its terms on {endpoint()}/datasets/{repo_id} "
                        "and log in (`hf auth login`) before using it.") from None
    except RepositoryNotFoundError:
        raise UserError(f"dataset '{repo_id}' was not found on the Hugging Face Hub (or is private). Check the "
                        "spelling (owner/name); `make find-datasets QUERY=...` lists candidates.") from None
    except RevisionNotFoundError:
        raise UserError(f"dataset '{repo_id}' has no revision '{revision}'. Use a branch, tag or commit sha "
                        "that exists, or leave REVISION out to pin the current commit.") from None
    except HfHubHTTPError as err:
        raise UserError(f"the Hugging Face Hub refused {what}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def tags_with(tags: Iterable[str] | None, prefix: str) -> list[str]:
    """Values of `prefix:value` tags, e.g. tags_with(tags, "license") -> ["mit"]."""
    return [t.split(":", 1)[1] for t in (tags or []) if t.startswith(prefix + ":")]
