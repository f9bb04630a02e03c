"""The Lesson tab's "new run": a teacher turns a knob and a real run appears in every dashboard.

The run is trained by the `nn-lesson` command itself, in a child process: the same argument checks, the same
Recorder, the same run-folder rules (claimed, written aside, moved into place) as at the terminal, and a
stuck or huge run cannot take the TensorBoard server down with it. The route adds bounds of its own, because
a click must not start hours of work: at most MAX_EPOCHS epochs and MAX_SECONDS of training.

Who may start a run (NewRunGate): the local user who started TensorBoard, alone. Training writes files as the
server's user, so "anyone who can reach the port" is not good enough, and on a shared machine every local
user can reach 127.0.0.1. A request is refused (403, one JSON line) unless, in this order:

1. the server listens on loopback only (not --bind_all, not a --host that is not loopback), unless the user
   set NN_LESSON_NEW_RUN=on knowingly (NN_LESSON_NEW_RUN=off turns the control off everywhere);
2. the peer is a loopback address (a machine on the network never trains, even with the token);
3. the Host header names a loopback host (localhost, 127.x.x.x, [::1]) with this server's port: a page of
   another site whose name was rebound to 127.0.0.1 sends its own name as Host, and is refused;
4. a browser's Origin, when sent, is this very Host, and Sec-Fetch-Site, when sent, is "same-origin";
5. the X-Lesson-New-Run header carries this server's token, compared in constant time. The token is random
   for each start (or NN_LESSON_TOKEN from the environment, which other users cannot read), printed only on
   the terminal of the user who started the server, in the part of the address after '#', which a browser
   never sends; the tab keeps it. A token served by a route would not do: anyone who can load the tab
   could read it.

Then the body: at most MAX_BODY bytes, a flat JSON object (nesting refused before parsing), the settings
checked by the CLI's own parsers; then one run at a time (409), at most RUNS_PER_HOUR runs started in any
hour and MAX_BYTES written by the tab's runs since the server started (429, saying which bound). The runs the
tab made are never deleted for you.
"""

from __future__ import annotations

import argparse
import collections
import hmac
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from nn_lesson.lesson.run.values import learning_rate, positive_int, seed
from nn_lesson.lesson.run.settings import INITS, LOSSES, LessonConfig
from nn_lesson.models import ACTIVATIONS

MAX_EPOCHS = 500       # 3,000 steps on the lesson's six students: a few seconds
MAX_BATCH = 64
MAX_SECONDS = 120
MAX_BODY = 4096            # bytes: seven settings are ~150
MAX_BODY_DEPTH = 1         # one flat object of settings
RUNS_PER_HOUR = 30         # runs the tab may start in any hour (NN_LESSON_RUNS_PER_HOUR)
MAX_BYTES = 1 << 30        # bytes the tab's runs may write per server (NN_LESSON_MAX_BYTES); 500 epochs: 13.6 MB
HEADER = "X-Lesson-New-Run"
TOKEN_ENV = "NN_LESSON_TOKEN"
SWITCH_ENV = "NN_LESSON_NEW_RUN"
MIN_TOKEN = 16


class NewRunRefused(Exception):
    """Settings or a logdir the route cannot train with; str() is the one-line reason, `status` the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _number(settings: dict, key: str, parse, default):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NewRunRefused(f"{key}: not a number: {str(value)[:40]!r}")
    try:
        return parse(str(value))
    except argparse.ArgumentTypeError as err:
        raise NewRunRefused(f"{key}: {err}") from None


def _choice(settings: dict, key: str, choices, default) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or value not in choices:
        raise NewRunRefused(f"{key}: must be one of {', '.join(choices)}, got {str(value)[:40]!r}")
    return value


def command_line(logdir: Path, settings: dict) -> list[str]:
    """The nn-lesson arguments for these settings, each checked by the CLI's own parsers and the bounds above."""
    if not isinstance(settings, dict):
        raise NewRunRefused("the request body must be a JSON object of settings")
    unknown = sorted(set(settings) - {"lr", "epochs", "batch_size", "seed", "init", "activation", "loss"})
    if unknown:
        raise NewRunRefused(f"unknown setting {unknown[0][:40]!r}; the knobs are lr, epochs, batch_size, seed, "
                            "init, activation, loss")
    d = LessonConfig()
    lr = _number(settings, "lr", learning_rate, d.lr)
    epochs = _number(settings, "epochs", positive_int, d.epochs)
    batch = _number(settings, "batch_size", positive_int, d.batch_size)
    if epochs > MAX_EPOCHS:
        raise NewRunRefused(f"epochs: at most {MAX_EPOCHS} from the tab (the terminal takes more), got {epochs}")
    if batch > MAX_BATCH:
        raise NewRunRefused(f"batch_size: at most {MAX_BATCH}, got {batch}")
    return [sys.executable, "-m", "nn_lesson", "--quiet", "--logdir", str(logdir),
            "--lr", repr(lr), "--epochs", str(epochs), "--batch-size", str(batch),
            "--seed", str(_number(settings, "seed", seed, d.seed)),
            "--init", _choice(settings, "init", INITS, d.init),
            "--activation", _choice(settings, "activation", ACTIVATIONS, d.activation),
            "--loss", _choice(settings, "loss", LOSSES, d.loss)]


def train_new_run(logdir: Path, settings: dict) -> dict:
    """Train and write one run under `logdir`; {"run": its name under the logdir, "steps": ...}."""
    args = command_line(logdir, settings)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=MAX_SECONDS)
    except subprocess.TimeoutExpired:  # the child was killed; its claim is cleaned up by the next run
        raise NewRunRefused(f"training took longer than {MAX_SECONDS} s and was stopped; try fewer epochs", 408) from None
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if line[:5] in ("run: ", "snaps"))
    if "run" not in lines:  # nothing written: say why in the command's own words (its last line)
        reason = (done.stderr.strip().splitlines() or [f"nn-lesson exited with code {done.returncode}"])[-1]
        raise NewRunRefused(reason.removeprefix("nn-lesson: ").strip()[:300])
    folder = Path(lines["run"].strip())
    try:
        name = folder.resolve().relative_to(logdir.resolve()).as_posix()
    except ValueError:
        name = folder.name
    # Exit code 3: the run diverged and was written all the same (marked stopped), as at the terminal.
    return {"run": name, "exit_code": done.returncode}


# ---- who may start a run ----
def _is_loopback_address(text: str | None) -> bool:
    try:
        address = ipaddress.ip_address((text or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def listens_on_loopback_only(flags) -> bool:
    """Whether TensorBoard was started to listen on this machine's loopback alone (no flags: a WSGI app in a
    test, which nobody outside can reach)."""
    if flags is None:
        return True
    if getattr(flags, "bind_all", False):
        return False
    host = getattr(flags, "host", None)
    if host in (None, "", "localhost"):
        return True
    if _is_loopback_address(host.strip("[]")):
        return True
    try:  # a name: every address it stands for must be loopback
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(_is_loopback_address(a) for a in found)


def _host_and_port(host: str) -> tuple[str, int | None] | None:
    """('127.0.0.1', 6006) from '127.0.0.1:6006', ('::1', None) from '[::1]'; None when malformed."""
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif host.count(":") > 1:  # an IPv6 address without brackets
        return None
    else:
        name, colon, port = host.partition(":")
        port = port if colon else None
    if port is not None and not (port.isdigit() and port.isascii()):
        return None
    return name.lower(), int(port) if port else None


def _loopback_host(host: str | None, server_port: str | None) -> bool:
    parsed = _host_and_port(host or "")
    if parsed is None:
        return False
    name, port = parsed
    if name != "localhost" and not _is_loopback_address(name):
        return False
    return str(port if port is not None else 80) == str(server_port)


class NewRunGate:
    """Decides whether a request may train a run, and bounds how many; one per plugin (per server)."""

    def __init__(self, flags=None, environ=None):
        environ = os.environ if environ is None else environ
        token = environ.get(TOKEN_ENV, "")
        self.token = token if len(token) >= MIN_TOKEN else secrets.token_urlsafe(24)
        self.switch = environ.get(SWITCH_ENV, "").strip().lower()
        self.loopback_only = listens_on_loopback_only(flags)
        self.runs_per_hour = _int_env(environ, "NN_LESSON_RUNS_PER_HOUR", RUNS_PER_HOUR)
        self.max_bytes = _int_env(environ, "NN_LESSON_MAX_BYTES", MAX_BYTES)
        self.clock = time.monotonic
        self.training = threading.Lock()              # one run at a time
        self._lock = threading.Lock()
        self.started: collections.deque = collections.deque()   # clock() of each run started
        self.written = 0                              # bytes of the runs the tab made
        self.made: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.switch == "on" or (self.switch != "off" and self.loopback_only)

    def refusal(self, request) -> str | None:
        """Why this request may not start a run (403), or None."""
        if request.method != "POST":
            return "a new run is asked for with POST"
        if self.switch == "off":
            return f"refused: '+ run' is turned off on this server ({SWITCH_ENV}=off)"
        if not self.enabled:
            return (f"refused: this TensorBoard listens beyond this machine (--bind_all or --host), so '+ run' is off; "
                    f"start it with {SWITCH_ENV}=on to allow it knowingly (loopback and the token still apply)")
        environ = request.environ
        if not _is_loopback_address(environ.get("REMOTE_ADDR")):
            return f"refused: '+ run' is for this machine's own user; the request came from {str(environ.get('REMOTE_ADDR'))[:60]}"
        host = environ.get("HTTP_HOST")
        if not _loopback_host(host, environ.get("SERVER_PORT")):
            return (f"refused: the address names {str(host)[:80]!r}, not this machine's loopback "
                    f"(localhost or 127.0.0.1) with this server's port")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            return f"refused: a request from another origin ({origin[:80]})"
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            return f"refused: a {site[:20]} request, not one of this page's own"
        sent = request.headers.get(HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), self.token.encode()):
            return (f"refused: the {HEADER} header does not carry this server's token; open the address with "
                    "#lesson&token=… printed where TensorBoard was started, once, in this browser")
        return None

    def bound(self) -> str | None:
        """Why no further run may start now (429), or None; called holding `training`."""
        with self._lock:
            now = self.clock()
            while self.started and now - self.started[0] >= 3600:
                self.started.popleft()
            if len(self.started) >= self.runs_per_hour:
                wait = 3600 - (now - self.started[0])
                return (f"bound reached: at most {self.runs_per_hour} runs from the tab in an hour; the next may "
                        f"start in {max(1, int(wait + 0.999))} s")
            if self.written >= self.max_bytes:
                return (f"bound reached: the tab's {len(self.made)} runs wrote {self.written / 1e6:.1f} MB, the most "
                        f"one TensorBoard lets the tab write is {self.max_bytes / 1e6:.0f} MB; remove runs you no longer "
                        "need and restart TensorBoard (runs are never deleted for you)")
            self.started.append(now)
            return None

    def account(self, logdir: Path, name: str) -> None:
        size = 0
        for folder, _, files in os.walk(logdir / name):
            for f in files:
                try:
                    size += os.lstat(os.path.join(folder, f)).st_size
                except OSError:
                    pass
        with self._lock:
            self.written += size
            self.made.append(name)

    def address_line(self, flags) -> str:
        """The line printed where TensorBoard was started: how this user's browser gets the token."""
        if not self.enabled:
            return ("nn-lesson: the Lesson tab's '+ run' is off: this TensorBoard listens beyond this machine "
                    f"({SWITCH_ENV}=on turns it on knowingly)" if self.switch != "off" else
                    f"nn-lesson: the Lesson tab's '+ run' is off ({SWITCH_ENV}=off)")
        port = getattr(flags, "port", None)
        where = f"http://localhost:{port}/" if port else "TensorBoard's address (below)"
        return (f"nn-lesson: the Lesson tab's '+ run' trains runs for whoever holds this token; open {where} with "
                f"#lesson&token={self.token} after it, once, in your browser (keep it to yourself)")


def _int_env(environ, name: str, default: int) -> int:
    try:
        value = int(environ.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default


def parse_body(request) -> dict:
    """The settings in the body: at most MAX_BODY bytes, one flat JSON object; NewRunRefused (400/413) else."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise NewRunRefused(f"the request body is {length} bytes; settings take at most {MAX_BODY}", 413)
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise NewRunRefused(f"the request body is over {MAX_BODY} bytes; settings take at most {MAX_BODY}", 413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NewRunRefused("the request body is not JSON (not UTF-8)") from None
    if not text.strip():
        return {}
    from nn_lesson.hooks.snapshot_file import max_depth
    if max_depth(text) > MAX_BODY_DEPTH:
        raise NewRunRefused("the request body must be one flat JSON object of settings (it nests)")
    try:
        settings = json.loads(text)
    except (ValueError, RecursionError):
        raise NewRunRefused("the request body is not JSON") from None
    if not isinstance(settings, dict):
        raise NewRunRefused("the request body must be a JSON object of settings")
    return settings
