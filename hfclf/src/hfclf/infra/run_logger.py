"""MLflow off the training's critical path: a side process logs the train stage's run.

Importing MLflow and opening its store (creating the sqlite database in a fresh project) takes
seconds of single-threaded Python. `RunLogger` starts `python -m hfclf.infra.run_logger` first
thing, so that work runs on another core while the stage imports PyTorch and loads the model; every
later call (params, datasets, tags, metrics, artifacts) is one JSON line down a pipe, so the
training loop never waits for the store. `draw` hands it a figure to render, too: the figure is
drawn and logged while the stage saves the model.

What the stage waits for, and what it does with failures:

- `use_store()`, `open()`: the store, then the run. A stage that stops before `use_store` leaves the
  store untouched (the side process is stopped); one that stops before `open` leaves no run.
- `run_id()`: the id of the opened run (the checkpoint and the saved model name it). A run that
  cannot be opened is a UserError: the later stages log into it. Training does not wait for it
  (opening the store takes over a second, and creating a fresh project's database more): the stage
  asks `opened_run()` as it logs metrics, and waits only before the first checkpoint needs the id.
- `close()`: the side process has applied every call and ended the run; nothing is dropped. A
  logging call that failed there (a store error mid-run) is logged as a warning - the stage's
  outputs do not depend on MLflow - but a figure that could not be drawn is an error: it is one
  of the stage's outputs. The stage calls `close()` before it returns, so when the process exits
  its outputs and its run are complete.

Calls are applied in the order they were made; consecutive metric calls go to the store as one
batch, each with the time and step it was logged at.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from hfclf.infra.errors import UserError

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_SECONDS = 600.0     # the side process finishing its backlog (a slow remote server)
MAX_METRICS_PER_BATCH = 1000      # MLflow's log_batch limit
# imported by the side process while it waits (what the first calls need: datasets, the figures)
WARM_UP = ("mlflow.data", "mlflow.entities", "hfclf.data.dataset", "hfclf.infra.render:pyplot")


class RunLogger:
    """The stage's side: a pipe of calls to the side process, and its replies."""

    def __init__(self) -> None:
        """Start the side process: it imports MLflow, then waits for `use_store`."""
        self._proc = subprocess.Popen([sys.executable, "-m", "hfclf.infra.run_logger"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
        self._opened = threading.Event()
        self._replies_ended = threading.Event()   # its stdout closed: it has said all it will say
        self._done = False                        # ... including that every call was applied
        self._drawn: list[Path] = []
        self._run_id: str | None = None
        self._error: str | None = None
        self._warnings: list[str] = []
        self._errors: list[str] = []
        self._closed = self._store_sent = False
        self._reader = threading.Thread(target=self._read_replies, daemon=True, name="run-logger-replies")
        self._reader.start()

    # ----------------------------------------------------------------------------- calls

    def use_store(self, uri: str, experiment: str) -> None:
        """Open the store at `uri` and `experiment` (created if new, tagged as model training)."""
        self._store_sent = True
        self._send({"op": "store", "uri": uri, "experiment": experiment})

    def open(self, run_id: str | None = None, run_name: str | None = None, tags: dict | None = None) -> None:
        """Open the run (or, with `run_id`, reopen it)."""
        self._send({"op": "open", "run_id": run_id, "run_name": run_name, "tags": _strings(tags)})

    def log_params(self, params: dict) -> None:
        self._send({"op": "params", "params": _strings(params)})

    def set_tags(self, tags: dict) -> None:
        self._send({"op": "tags", "tags": _strings(tags)})

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        self._send({"op": "metrics", "metrics": {k: float(v) for k, v in metrics.items()}, "step": int(step),
                    "timestamp": int(time.time() * 1000)})

    def log_artifacts(self, paths: Sequence[Path], artifact_path: str = "reports") -> None:
        """Files written before this call (the side process copies them later; missing ones are skipped)."""
        self._send({"op": "artifacts", "paths": [str(Path(p).resolve()) for p in paths],
                    "artifact_path": artifact_path})

    def log_datasets(self, processed: Path, splits: Sequence[str], fingerprint: str, origin: dict | None) -> None:
        """The splits as the run's dataset inputs (tracking.log_datasets), read by the side process."""
        self._send({"op": "datasets", "processed": str(Path(processed).resolve()), "splits": list(splits),
                    "fingerprint": fingerprint, "origin": origin})

    def draw(self, function: str, path: Path, *args, artifact_path: str = "figures") -> None:
        """Write the figure `path` there by `function(*args, path)` ("module:name"; JSON arguments),
        then log it under `artifact_path`. A failure is an error at `close()`."""
        self._drawn.append(Path(path))
        self._send({"op": "draw", "function": function, "args": list(args), "path": str(Path(path).resolve()),
                    "artifact_path": artifact_path})

    # ----------------------------------------------------------------------------- waiting

    def run_id(self) -> str:
        """The opened run's id, once the side process has it; a UserError when it could not open one."""
        while not self._opened.wait(0.5):
            if self._proc.poll() is not None and not self._opened.wait(2):
                self._error = self._error or f"the MLflow logging process exited ({self._proc.returncode})"
                self._opened.set()
        if self._run_id is None:
            self.close("FAILED", wait=False)
            raise UserError(f"MLflow could not open the run: {self._error}")
        return self._run_id

    def opened_run(self) -> str | None:
        """`run_id()` without waiting: None while the side process is still opening the run."""
        return self.run_id() if self._opened.is_set() else None

    def close(self, status: str = "FINISHED", wait: bool = True) -> list[str]:
        """End the run with `status` once every call before this one is applied; wait for the side
        process to exit, log what failed there as warnings (returned), and raise if a figure failed."""
        if self._closed:
            return self._warnings
        self._closed = True
        if not self._store_sent:   # it has only been importing MLflow: nothing to finish
            self._proc.kill()
            self._proc.wait()
            return self._warnings
        self._send({"op": "end", "status": status}, closing=True)
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if not wait:
            return self._warnings
        started = time.monotonic()
        if not self._replies_ended.wait(2):
            log.info("waiting for MLflow logging to finish")
            self._replies_ended.wait(max(0.0, CLOSE_TIMEOUT_SECONDS - (time.monotonic() - started)))
        try:
            self._proc.wait(timeout=max(1.0, CLOSE_TIMEOUT_SECONDS - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            self._warnings.append(f"MLflow logging did not finish within {CLOSE_TIMEOUT_SECONDS:.0f} s: stopped")
        self._reader.join(5)
        if not self._done and not self._error:
            self._warnings.append(f"the MLflow logging process exited ({self._proc.returncode}) before it "
                                  "confirmed every call: the run may be incomplete")
            self._errors += [f"{path} was not drawn" for path in self._drawn if not path.exists()]
        for warning in self._warnings:
            log.warning("MLflow: %s", warning)
        if self._errors and status == "FINISHED":
            raise RuntimeError("; ".join(self._errors))
        return self._warnings

    # ----------------------------------------------------------------------------- plumbing

    def _send(self, message: dict, closing: bool = False) -> None:
        if self._closed and not closing:
            raise RuntimeError("this RunLogger is closed")
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):   # the side process is gone: said once, at close()
            lost = f"the MLflow logging process exited ({self._proc.poll()}); calls from '{message['op']}' on were lost"
            if not any("calls from" in w for w in self._warnings):
                self._warnings.append(lost)
            if message["op"] == "draw":
                self._errors.append(f"{message['path']} was not drawn: {lost}")

    def _read_replies(self) -> None:
        for line in self._proc.stdout:
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "run_id" in reply:
                self._run_id = reply["run_id"]
            if "error" in reply:
                self._error = reply["error"]
            self._warnings.extend(reply.get("warnings", []))
            self._errors.extend(reply.get("errors", []))
            if "run_id" in reply or "error" in reply:
                self._opened.set()
            self._done = self._done or bool(reply.get("done"))
        self._opened.set()
        self._replies_ended.set()


def _strings(values: dict | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


def _first_line(err: BaseException, limit: int = 300) -> str:
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:limit]}"


# --------------------------------------------------------------------------------- the side process

def serve(commands, replies) -> int:
    """Apply the JSON-line calls read from `commands`, replying on `replies`; returns the exit code."""
    import importlib
    import queue

    def reply(payload: dict) -> None:
        try:
            replies.write(json.dumps(payload) + "\n")
            replies.flush()
        except (OSError, ValueError):   # the stage is gone (it did not wait): nobody to tell
            pass

    inbox: queue.Queue = queue.Queue()

    def read() -> None:   # a thread, so the pipe never fills while a store call is slow
        for line in commands:
            if line.strip():
                inbox.put(json.loads(line))
        inbox.put(None)
    threading.Thread(target=read, daemon=True, name="run-logger-commands").start()

    warm_up = list(WARM_UP)

    def receive() -> dict | None:
        """The next call; while there is none, the next warm-up import (never delaying a call)."""
        while warm_up and inbox.empty():
            module, _, function = warm_up.pop(0).partition(":")
            try:
                loaded = importlib.import_module(module)
                if function:
                    getattr(loaded, function)()
            except Exception:   # noqa: BLE001 - only a head start: the call that needs it will say
                pass
        return inbox.get()

    import mlflow   # while the stage imports PyTorch: the point of this process

    from hfclf.infra import tracking

    store = inbox.get()
    if store is None or store["op"] != "store":
        reply({"done": True})
        return 0
    try:
        tracking.use_store(store["uri"], store["experiment"])
    except Exception as err:   # noqa: BLE001 - whatever the store says, the stage reports it
        reply({"error": _first_line(err, 500)})
        return 1
    first = receive()
    if first is None or first["op"] != "open":   # the stage stopped before it opened a run
        reply({"done": True})
        return 0
    try:
        run = mlflow.start_run(run_id=first.get("run_id"), run_name=first.get("run_name"),
                               tags=first.get("tags") or None)
    except Exception as err:   # noqa: BLE001
        reply({"error": _first_line(err, 500)})
        return 1
    reply({"run_id": run.info.run_id})

    warnings: list[str] = []
    errors: list[str] = []
    status, pending = "KILLED", []   # input that ends without `end`: the stage died
    while True:
        # a message the drain below took out of turn comes first, the end of input (None) included:
        # a killed stage's last metrics are followed by that end, and waiting for more would be forever
        message = pending.pop() if pending else receive()
        if message is None:
            break
        if message["op"] == "end":
            status = message.get("status") or "FINISHED"
            break
        batch = [message]
        while message["op"] == "metrics":   # drain what is queued: one store call for all of it
            try:
                following = inbox.get_nowait()
            except queue.Empty:
                break
            if following is None or following["op"] != "metrics":
                pending.append(following)
                break
            batch.append(following)
        if message["op"] == "draw":   # an output of the stage: failing to draw it is an error
            try:
                _draw(message)
            except Exception as err:   # noqa: BLE001
                errors.append(f"drawing {message['path']} failed: {_first_line(err)}")
                continue
            batch = [{"op": "artifacts", "paths": [message["path"]], "artifact_path": message["artifact_path"]}]
        try:
            _apply(batch, run.info.run_id)
        except Exception as err:   # noqa: BLE001 - logging: a warning, the outputs do not depend on it
            warnings.append(f"{batch[0]['op']}: {_first_line(err)}")
    try:
        mlflow.end_run(status="FAILED" if errors and status == "FINISHED" else status)
    except Exception as err:   # noqa: BLE001
        warnings.append(f"end_run: {_first_line(err)}")
    reply({"done": True, "warnings": warnings, "errors": errors})
    return 0


def _apply(batch: list[dict], run_id: str) -> None:
    import mlflow

    from hfclf.infra import tracking

    message = batch[0]
    op = message["op"]
    if op == "metrics":
        from mlflow.entities import Metric

        metrics = [Metric(key, value, m["timestamp"], m["step"]) for m in batch for key, value in m["metrics"].items()]
        client = mlflow.MlflowClient()
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH], synchronous=True)
    elif op == "params":
        mlflow.log_params(message["params"])
    elif op == "tags":
        mlflow.set_tags(message["tags"])
    elif op == "artifacts":
        tracking.log_report_files([Path(p) for p in message["paths"]], message["artifact_path"])
    elif op == "datasets":
        from hfclf.data import dataset

        processed = Path(message["processed"])
        frames = {split: dataset.read_split(processed, split) for split in message["splits"]}
        tracking.log_datasets(frames, message["fingerprint"], message.get("origin"))
    else:
        raise ValueError(f"unknown call {op!r}")


def _draw(message: dict) -> None:
    import importlib

    module, _, name = message["function"].partition(":")
    getattr(importlib.import_module(module), name)(*message["args"], Path(message["path"]))


def main() -> None:
    import signal

    # Ctrl-C reaches the whole process group: the stage ends the run (KILLED), this process must not die first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # replies get their own copy of stdout; anything a library prints goes to stderr instead
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    code = serve(sys.stdin, replies)
    try:
        replies.close()
    except OSError:
        pass
    from hfclf.infra.cli import exit_now

    exit_now(code)   # the run is ended and stored: no teardown of MLflow's modules for the stage to wait for
    sys.exit(code)


if __name__ == "__main__":
    main()
