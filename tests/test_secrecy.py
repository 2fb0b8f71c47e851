"""Secrets never appear in anything batchsms writes (CONTRACT §6), whatever happens.

Distinctive values are set for the SK, the security token, the auth token (environment and
`--token-file`) and the AK, and every command runs with its logs at their most verbose
(`--log-format json` and `console`, progress bar forced on), through successes and failures:
`run` against a simulator that checks AK/SK (right keys: exit 0; wrong SK: 401 abort, exit 3),
against a scripted server answering 500/429/resets/timeouts, `--dry-run`, missing or broken
credentials (exit 2), `validate`, `report` (text, `--json`, `--failed-to`), `tasks` (stdout and
`--out`), `--metrics-file`, a run stopped by SIGTERM, and `run`, `plan` and `tasks` against a server
that echoes every credential it receives into its answers (error fields, `X-Request-Id`,
`Location`, task values). Every byte written (stdout, stderr, every file in the work directory,
the simulator's own output) is scanned for each secret, raw and in its base64, URL-encoded,
JSON-escaped and hex forms.

The AK is an identifier (it travels in every `Authorization` header on purpose), but it is
scanned too: nothing batchsms writes needs it, and `credentials.py` redacts it like the SK.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

from tests import processes
from tests.processes import InProcess, simulator_process, start_batchsms
from tests.servers import RESET, Answer, Hang, app_server, scripted_server
from tests.servers import Server as HostileServer

AK = "AKSECRECY7Q3Z9XW1PLK"
SK = "SKsecrecy+9f8e/7d6c=5b4a3210zyxwvutsrqpo"
OTHER_SK = "SKsecrecyOTHER+key/0000111122223333"  # what a simulator expects when ours is wrong
SECURITY_TOKEN = "STSsecrecy+0a1b/2c3d4e5f6a7b8c9d=="
AUTH_TOKEN = "MIIsecrecyAUTH+token/ffeeddccbbaa99"
FILE_TOKEN = "MIIsecrecyFILE+token/1122334455667788"
SECRETS = {"AK": AK, "SK": SK, "OTHER_SK": OTHER_SK, "SECURITY_TOKEN": SECURITY_TOKEN,
           "AUTH_TOKEN": AUTH_TOKEN, "FILE_TOKEN": FILE_TOKEN}

AKSK_ENV = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN,
            "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef"}
SIM_AKSK = {"BATCHSMS_SIMULATOR_AK": AK, "BATCHSMS_SIMULATOR_SK": SK}
LOG_FORMATS = ["json", "console"]


def forms(secret: str) -> dict[str, bytes]:
    """The secret as it could leak: raw, base64 (at every alignment), URL-encoded (upper- and
    lower-case escapes), JSON-escaped (`\\/` included), hex."""
    raw = secret.encode()
    url = quote(secret, safe="")
    out = {"raw": raw, "url": url.encode(), "url+": quote(secret).encode(),
           "url-lower": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), url).encode(),
           "json": orjson.dumps(secret)[1:-1],
           "json\\/": orjson.dumps(secret)[1:-1].replace(b"/", b"\\/"),
           "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for encode, name in ((base64.b64encode, "b64"), (base64.urlsafe_b64encode, "b64url")):
        for shift in range(3):
            enc = encode(b"\0" * shift + raw)
            out[f"{name}@{shift}"] = enc[4 if shift else 0: -4]  # the part the secret alone fixes
    return out


@dataclass
class Scan:
    """Everything batchsms wrote in one test: labelled blobs, checked at the end."""

    work: Path
    cli: InProcess | None = None
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    checked: bool = False

    def add(self, label: str, data: bytes | str | None) -> None:
        if data:
            self.blobs.append((label, data.encode() if isinstance(data, str) else data))

    def result(self, label: str, result: subprocess.CompletedProcess[Any]) -> None:
        self.add(f"{label} stdout", result.stdout)
        self.add(f"{label} stderr", result.stderr)

    def check(self) -> None:
        if self.checked:  # a test may check before its own last assertions; once is enough
            return
        self.checked = True
        for path in sorted(self.work.rglob("*")):
            if path.is_file():
                self.add(f"file {path.relative_to(self.work)}", path.read_bytes())
        assert self.blobs, "nothing was scanned"
        leaks = []
        for label, data in self.blobs:
            for name, secret in SECRETS.items():
                for form, needle in forms(secret).items():
                    at = data.find(needle)
                    if at >= 0:
                        context = data[max(0, at - 60): at + len(needle) + 20]
                        leaks.append(f"{name} ({form}) in {label}: ...{context!r}...")
        assert not leaks, "\n".join(leaks)


def test_the_scan_finds_every_form_of_a_secret(tmp_path: Path) -> None:
    """The scanner itself: a secret hidden in base64 at any offset, URL-encoded or hex is found."""
    for blob in (f"Authorization: Basic {base64.b64encode(f'user:{SK}'.encode()).decode()}",
                 f"Authorization: Basic {base64.b64encode(f'u:{SK}'.encode()).decode()}",
                 f"Authorization: Basic {base64.b64encode(f':{SK}'.encode()).decode()}",
                 f"url=https://x/?token={quote(AUTH_TOKEN, safe='')}",
                 f"key={SECURITY_TOKEN.encode().hex()}", f'{{"ak": "{AK}"}}'):
        found = Scan(tmp_path)
        found.add("blob", blob)
        with pytest.raises(AssertionError, match="in blob"):
            found.check()


@pytest.fixture
def scan(tmp_path: Path, cli: InProcess) -> Iterator[Scan]:
    work = tmp_path / "work"
    work.mkdir()
    found = Scan(work, cli)
    yield found
    found.check()


def batchsms(scan: Scan, label: str, *args: str, env: dict[str, str] | None = None,
             timeout: float = 90, child: bool = False) -> subprocess.CompletedProcess[bytes]:
    """`batchsms ARGS` in the work directory, its output scanned; in this process (what is
    written is the point, not the process), or as a `child`: once per command, so that a real
    process's output is scanned too."""
    if child or scan.cli is None:
        result = processes.batchsms(*args, env=env, cwd=scan.work, timeout=timeout)
    else:
        result = scan.cli(*args, env=env, cwd=scan.work)
    scan.result(label, result)
    assert b"Traceback" not in result.stderr, result.stderr.decode()[-3000:]
    return result


def input_file(scan: Scan, n: int = 6, bad: bool = True) -> Path:
    """n sound lines, and (bad) a line with an unknown field and a line that is not JSON."""
    lines = [orjson.dumps({"task_id": f"t{i}", "body": {"speed_limit": 10 + i}, "ref": f"r{i}"})
             for i in range(n)]
    if bad:
        lines += [b'{"task_id": "bad", "body": {"speedlimit": 5}}', b"not json"]
    path = scan.work / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@contextmanager
def simulator(scan: Scan, label: str, env: dict[str, str]) -> Iterator[str]:
    """`batchsms simulator --port 0` in a subprocess, expecting the credentials in `env`."""
    sim = None
    try:
        with simulator_process(env=env, cwd=scan.work) as sim:
            yield sim.url
    finally:
        if sim is not None:
            scan.add(f"{label} stdout", sim.first_line.encode() + sim.stdout)
            scan.add(f"{label} stderr", sim.stderr)


def run_args(source: Path, out: str, log_format: str, *extra: str) -> list[str]:
    return ["run", str(source), "--out", out, "--log-format", log_format, "--progress",
            "--rate", "0", *extra]


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_aksk_against_a_checking_simulator(scan: Scan, log_format: str) -> None:
    """Right keys: success; wrong SK: 401, abort (exit 3); then report and tasks on both."""
    source = input_file(scan)
    with simulator(scan, "simulator", SIM_AKSK) as url:
        ok = batchsms(scan, "run ok", *run_args(source, "ok.jsonl", log_format, "--endpoint", url,
                                                "--metrics-file", "ok.prom"), env=AKSK_ENV,
                      child=log_format == "json")
        assert ok.returncode == 1, ok.stderr.decode()  # the two bad lines are invalid
        statuses = [orjson.loads(r)["status"] for r in (scan.work / "ok.jsonl").read_bytes()
                    .splitlines()]
        assert sorted(statuses) == ["invalid"] * 2 + ["succeeded"] * 6
        if log_format == "json":  # tasks takes no --log-format: once is enough
            listed = batchsms(scan, "tasks stdout", "tasks", "--endpoint", url, env=AKSK_ENV,
                              child=True)
            assert listed.returncode == 0, listed.stderr.decode()
            assert listed.stdout.count(b"\n") == 6
            listed = batchsms(scan, "tasks --out", "tasks", "--endpoint", url, "--out",
                              "fleet.jsonl", env=AKSK_ENV)
            assert listed.returncode == 0, listed.stderr.decode()
    with simulator(scan, "simulator other sk", {**SIM_AKSK, "BATCHSMS_SIMULATOR_SK": OTHER_SK}) \
            as url:
        bad = batchsms(scan, "run wrong sk",
                       *run_args(source, "bad.jsonl", log_format, "--endpoint", url,
                                 "--metrics-file", "bad.prom"), env=AKSK_ENV)
        assert bad.returncode == 3, bad.stderr.decode()
        records = [orjson.loads(r) for r in (scan.work / "bad.jsonl").read_bytes().splitlines()]
        assert {r["http_status"] for r in records if r["attempts"]} == {401}
        if log_format == "json":
            listed = batchsms(scan, "tasks wrong sk", "tasks", "--endpoint", url, "--out",
                              "f2.jsonl", env=AKSK_ENV)
            assert listed.returncode == 3, listed.stderr.decode()
    if log_format == "console":
        return  # report and tasks take no --log-format: what follows is the same for both
    for name in ("ok.jsonl", "bad.jsonl"):
        for args in ([], ["--json"], ["--failed-to", f"{name}.failed", "--input", str(source)],
                     ["--failed-to", f"{name}.envelopes"]):
            batchsms(scan, f"report {name} {args}", "report", name, *args, env=AKSK_ENV,
                     child=(name, args) == ("ok.jsonl", []))


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_simulate_with_expected_keys_right_and_wrong(scan: Scan, log_format: str) -> None:
    """`run --simulate` with BATCHSMS_SIMULATOR_AK/SK: the in-process simulator checks too."""
    source = input_file(scan, bad=False)
    ok = batchsms(scan, "simulate ok", *run_args(source, "ok.jsonl", log_format, "--simulate"),
                  env={**AKSK_ENV, **SIM_AKSK})
    assert ok.returncode == 0, ok.stderr.decode()
    bad = batchsms(scan, "simulate wrong sk",
                   *run_args(source, "bad.jsonl", log_format, "--simulate"),
                   env={**AKSK_ENV, **SIM_AKSK, "BATCHSMS_SIMULATOR_SK": OTHER_SK})
    assert bad.returncode == 3, bad.stderr.decode()
    token = batchsms(scan, "simulate token", *run_args(source, "tok.jsonl", log_format,
                                                       "--simulate"),
                     env={"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN,
                          "BATCHSMS_SIMULATOR_TOKEN": FILE_TOKEN})
    assert token.returncode == 3, token.stderr.decode()


def _failing_server_run(scan: Scan, log_format: str, env: dict[str, str],
                        *extra: str) -> None:
    source = input_file(scan)
    with scripted_server() as server:
        server.script("t0", *[Answer(500)] * 3)
        server.script("t1", Answer(429, {"Retry-After": "0"},
                                   {"error_code": "APIGW.0308", "error_msg": "throttled"}),
                      Answer(429))
        server.script("t2", RESET, RESET, RESET)
        server.script("t3", Hang(1.5), Hang(1.5))
        server.script("t4", Answer(403, body={"error_code": "APIG.0301", "error_msg": "no"}))
        server.script("t5", Answer(502, body={}), Answer(200))
        result = batchsms(scan, f"run failing server {log_format}",
                          *run_args(source, "out.jsonl", log_format, "--endpoint", server.url,
                                    "--max-attempts", "2", "--timeout", "0.5",
                                    "--metrics-file", "out.prom", *extra), env=env)
        received = list(server.received)
    assert result.returncode == 1, result.stderr.decode()
    records = {r["task_id"]: r for r in
               (orjson.loads(x) for x in (scan.work / "out.jsonl").read_bytes().splitlines())}
    assert records["t0"]["error_code"] == "SMS.500"
    assert records["t2"]["error_code"] == "connection"
    assert records["t3"]["error_code"] == "timeout"
    assert records["t5"]["status"] == "succeeded"
    # the credentials really were sent, so the scan is not vacuous
    sent = b"".join(str(r.headers).encode() for r in received)
    assert any(needle in sent for needle in (AK.encode(), AUTH_TOKEN.encode(),
                                             FILE_TOKEN.encode()))
    if log_format == "json":  # report takes no --log-format: once per credential kind
        batchsms(scan, "report", "report", "out.jsonl", "--failed-to", "again.jsonl",
                 "--input", str(source), env=env)


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_aksk_with_security_token_against_5xx_429_resets_and_timeouts(scan: Scan,
                                                                      log_format: str) -> None:
    _failing_server_run(scan, log_format, AKSK_ENV)


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_tokens_against_5xx_429_resets_and_timeouts(scan: Scan, log_format: str,
                                                    tmp_path: Path) -> None:
    if log_format == "json":
        _failing_server_run(scan, log_format, {"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN})
    else:  # --token-file wins over the environment
        token_file = tmp_path / "token"  # outside the scanned work directory: it holds a secret
        token_file.write_text(FILE_TOKEN + "\n")
        _failing_server_run(scan, log_format, {"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN, **AKSK_ENV},
                            "--token-file", str(token_file))


@pytest.mark.parametrize("log_format", LOG_FORMATS)
def test_dry_run_and_validate_print_no_secret(scan: Scan, log_format: str) -> None:
    source = input_file(scan)
    env = {**AKSK_ENV, "BATCHSMS_AUTH_TOKEN": AUTH_TOKEN}
    dry = batchsms(scan, "dry-run", "run", str(source), "--dry-run", "--region", "cn-north-4",
                   "--log-format", log_format, "--set", "target_server.flavor=s6.large.2",
                   env=env)
    assert dry.returncode == 1, dry.stderr.decode()
    assert dry.stdout.count(b"\n") == 6
    if log_format == "json":  # validate takes no --log-format: once is enough
        checked = batchsms(scan, "validate", "validate", str(source), "--out", "v.jsonl",
                           env=env, child=True)
        assert checked.returncode == 1


def test_missing_or_broken_credentials_exit_2_quoting_nothing(scan: Scan, tmp_path: Path) -> None:
    source = input_file(scan, n=1, bad=False)
    broken = tmp_path / "credentials.broken"  # a parser error would quote the offending line
    broken.write_text(f"[basic]\nak = {AK}\nsk {SK}\n[global\nsecurity_token={SECURITY_TOKEN}\n")
    half = tmp_path / "credentials.half"
    half.write_text(f"[basic]\nsk = {SK}\nsecurity_token = {SECURITY_TOKEN}\n")
    empty_token = tmp_path / "token.empty"
    empty_token.write_text("  \n")
    cases: list[tuple[dict[str, str], list[str], str]] = [
        ({"HUAWEICLOUD_SDK_AK": AK}, [], "HUAWEICLOUD_SDK_SK"),
        ({"HUAWEICLOUD_SDK_SK": SK, "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN}, [],
         "HUAWEICLOUD_SDK_AK"),
        ({"CLOUD_SDK_SK": SK}, [], "CLOUD_SDK_AK"),
        ({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(broken)}, [], "cannot parse"),
        ({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(half)}, [], "has no ak"),
        (AKSK_ENV, ["--token-file", str(empty_token)], "is empty"),
        (AKSK_ENV, ["--token-file", str(tmp_path / "absent")], "cannot read --token-file"),
    ]

    def check(env: dict[str, str], extra: list[str], says: str) -> None:
        result = batchsms(scan, f"run {sorted(env)} {extra}", "run", str(source), "--endpoint",
                          "https://sms.example.invalid", "--out", "never.jsonl",
                          "--log-format", "json", *extra, env=env)
        assert result.returncode == 2, (env, extra, result.stderr.decode())
        assert says in result.stderr.decode(), result.stderr.decode()
        assert len(result.stderr.strip().splitlines()) == 1
        listed = batchsms(scan, f"tasks {sorted(env)} {extra}", "tasks", "--endpoint",
                          "https://sms.example.invalid", *extra, env=env)
        assert listed.returncode == 2, listed.stderr.decode()
        assert says in listed.stderr.decode(), listed.stderr.decode()
        # a rehearsal needs no credentials: whatever it makes of broken ones, it says no secret
        batchsms(scan, f"simulate {sorted(env)} {extra}", "run", str(source), "--simulate",
                 "--out", f"sim-{cases.index((env, extra, says))}.jsonl",
                 "--log-format", "console", *extra, env=env)

    for case in cases:
        check(*case)
    # the simulator's own half pair
    sim = batchsms(scan, "simulator half pair", "simulator", "--port", "0",
                   env={"BATCHSMS_SIMULATOR_SK": SK}, timeout=30, child=True)
    assert sim.returncode == 2


def test_sigterm_mid_run_leaks_nothing(scan: Scan) -> None:
    lines = [orjson.dumps({"task_id": f"t{i}", "body": {"speed_limit": i}}) for i in range(60)]
    source = scan.work / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    with scripted_server(Hang(0.2)) as server:
        proc = start_batchsms(*run_args(source, "out.jsonl", "console", "--endpoint", server.url,
                                        "--concurrency", "4", "--metrics-file", "out.prom"),
                              env=AKSK_ENV, cwd=scan.work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while len(server.received) < 8:
            assert time.monotonic() < deadline, "the run did not start sending"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    scan.add("sigterm stdout", out)
    scan.add("sigterm stderr", err)
    assert proc.returncode == 143, err.decode()
    assert len((scan.work / "out.jsonl").read_bytes().splitlines()) == 60


@pytest.mark.parametrize("env", [{"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN}, AKSK_ENV],
                         ids=["token", "aksk+security-token"])
def test_redirects_send_no_secret_to_a_second_server(scan: Scan, env: dict[str, str]) -> None:
    """303 to the same path, 307 and 302 to another port, a 302 loop; ListTasks redirected:
    no request follows, so the second server receives nothing (counted: zero), the first one
    exactly one request per attempt, and the `Location` query (a token) is never written."""
    source = scan.work / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"task_id": t, "body": {"speed_limit": 5}}) + b"\n"
                                for t in ("same", "away307", "away302", "loop")))

    async def there(_: web.Request, __: HostileServer) -> web.StreamResponse:
        return web.json_response({"id": "x", "count": 0, "tasks": []})

    with app_server(there) as second:
        query = f"?X-Auth-Token={quote(AUTH_TOKEN, safe='')}&sts={SECURITY_TOKEN}"
        targets = {"/v3/tasks/same": (303, "/v3/tasks/same"),
                   "/v3/tasks/away307": (307, f"{second.url}/v3/tasks/away307{query}"),
                   "/v3/tasks/away302": (302, f"{second.url}/v3/tasks/away302{query}"),
                   "/v3/tasks/loop": (302, "/v3/tasks/loop"),
                   "/v3/tasks": (302, f"{second.url}/v3/tasks{query}")}

        async def first_answer(request: web.Request, _: HostileServer) -> web.StreamResponse:
            status, location = targets[request.path]
            return web.Response(status=status, headers={"Location": location},
                                body=b'{"error_code": "SMS.0001", "error_msg": "moved"}')

        with app_server(first_answer) as first:
            run = batchsms(scan, "run redirected", *run_args(source, "out.jsonl", "json",
                                                             "--endpoint", first.url), env=env)
            listed = batchsms(scan, "tasks redirected", "tasks", "--endpoint", first.url,
                              "--out", "fleet.jsonl", env=env)
            received = list(first.received)
        assert second.received == []
    assert run.returncode == 1, run.stderr.decode()
    records = {r["task_id"]: r for r in
               (orjson.loads(x) for x in (scan.work / "out.jsonl").read_bytes().splitlines())}
    expected = {"same": 303, "away307": 307, "away302": 302, "loop": 302}
    for task_id, status in expected.items():
        record = records[task_id]
        assert (record["status"], record["http_status"], record["attempts"],
                record["error_code"]) == ("failed", status, 1, f"http_{status}"), record
        assert "redirect" in record["error_msg"]
    assert f"{second.url}/v3/tasks/away307 " in records["away307"]["error_msg"]
    assert sorted((r.method, r.path.partition("?")[0]) for r in received) == sorted(
        [("PUT", f"/v3/tasks/{t}") for t in expected] + [("GET", "/v3/tasks")])
    assert listed.returncode == 1, listed.stderr.decode()
    assert b"http_302" in listed.stderr
    assert not (scan.work / "fleet.jsonl").exists()
    sent = b"".join(str(r.headers).encode() for r in received)  # the scan is not vacuous
    assert any(needle in sent for needle in (AUTH_TOKEN.encode(), SECURITY_TOKEN.encode()))


# -- a server that echoes the credentials it receives ------------------------------------------

MARK = b"[redacted]"


def _echoed(request: web.Request) -> list[str]:
    """The credential values this request carried, as a server that echoes its request sees
    them (the AK out of the `Authorization` header), and the SK, as if the server knew it too."""
    values = [v for v in (request.headers.get("X-Auth-Token"),
                          request.headers.get("X-Security-Token")) if v]
    access = re.search(r"Access=([^,]+),", request.headers.get("Authorization", ""))
    if access:
        values += [access.group(1), SK]
    return values


def _all_forms(values: list[str]) -> str:
    """Each value raw, percent-encoded (upper- and lower-case), and JSON-escaped as a server
    that dumps the request with escaped slashes would write it."""
    out = []
    for v in values:
        url = quote(v, safe="")
        lower = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), url)
        out += [v, url, lower, orjson.dumps(v)[1:-1].decode().replace("/", "\\/")]
    return " ".join(out)


async def _echo(request: web.Request, _: HostileServer) -> web.StreamResponse:
    """An SMS endpoint that puts every credential it receives into what it answers: the error
    code and message, `X-Request-Id`, a redirect's `Location` (path and query), and the values
    of a task (ShowTask) or of a fleet (ListTasks). Task ids say which answer: `fail-K` (400),
    `moved-K` (302), anything else 200; K picks the value used where only one fits."""
    values = _echoed(request)
    path = request.path
    task = path.removeprefix("/v3/tasks").removeprefix("/")
    k = int(task.rpartition("-")[2]) if task[-1:].isdigit() else 0
    one = values[k % len(values)] if values else "none"
    echoed = _all_forms(values)
    headers = {"X-Request-Id": one}
    if task.startswith("fail") or request.query.get("name") == "fail":
        return web.json_response({"error_code": f"E.{one}"[:64], "error_msg": f"echo {echoed}"},
                                 status=400 if task else 500, headers=headers)
    if task.startswith("moved"):
        location = f"http://127.0.0.1:9/{quote(one, safe='')}/{one}/x?t={one}"
        return web.Response(status=302, headers={**headers, "Location": location})
    if request.method == "GET" and not task:  # ListTasks
        tasks = [{"id": f"id-{v}", "name": f"n {_all_forms([v])}"} for v in values]
        return web.json_response({"count": len(tasks), "tasks": tasks}, headers=headers)
    if request.method == "GET":  # ShowTask
        return web.json_response({"id": task, "name": f"n {echoed}"[:250], "speed_limit": 1,
                                  "target_server": {"name": one}}, headers=headers)
    return web.json_response({}, headers=headers)


ECHO_CREDENTIALS = [("token", {"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN}, False),
                    ("token-file", {"BATCHSMS_AUTH_TOKEN": AUTH_TOKEN, **AKSK_ENV}, True),
                    ("aksk+security-token", AKSK_ENV, False)]


@pytest.mark.parametrize(("kind", "env", "token_file"), ECHO_CREDENTIALS,
                         ids=[c[0] for c in ECHO_CREDENTIALS])
def test_a_server_echoing_the_credentials_gets_none_written(
        scan: Scan, tmp_path: Path, kind: str, env: dict[str, str], token_file: bool) -> None:
    """CONTRACT §6: known secret values are cut out of everything taken from an answer. The
    echoing server puts the token, the security token, the AK (and the SK) into error codes and
    messages, `X-Request-Id`, a redirect's `Location` and task values; `run` (with `--verify`
    and `--undo-file`, so values read back reach outcomes and files), `plan` (text and
    `--json`) and `tasks` (stdout, `--out`, a failed listing) write `[redacted]` instead."""
    extra: list[str] = []
    if token_file:
        path = tmp_path / "token"  # outside the scanned work directory: it holds a secret
        path.write_text(FILE_TOKEN + "\n")
        extra = ["--token-file", str(path)]
    ids = [f"{what}-{k}" for what in ("fail", "moved", "ok") for k in range(3)]
    source = scan.work / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"task_id": t, "body": {
        "name": "wanted", "speed_limit": 2, "target_server": {"name": "tn"}}}) + b"\n"
        for t in ids))
    with app_server(_echo) as server:
        plain = batchsms(scan, f"run plain {kind}", *run_args(
            source, "plain.jsonl", "json", "--endpoint", server.url, "--max-attempts", "1",
            *extra), env=env)
        run = batchsms(scan, f"run {kind}", *run_args(
            source, "out.jsonl", "json", "--endpoint", server.url, "--max-attempts", "1",
            "--verify", "--undo-file", "undo.jsonl", "--allow-irreversible", *extra), env=env)
        plans = [batchsms(scan, f"plan {kind} {fmt}", "plan", str(source), "--endpoint",
                          server.url, "--rate", "0", "--max-attempts", "1", *fmt, *extra,
                          env=env) for fmt in ([], ["--json"])]
        listed = batchsms(scan, f"tasks {kind}", "tasks", "--endpoint", server.url, *extra,
                          env=env)
        listed_out = batchsms(scan, f"tasks --out {kind}", "tasks", "--endpoint", server.url,
                              "--out", "fleet.jsonl", *extra, env=env)
        failed = batchsms(scan, f"tasks failing {kind}", "tasks", "--endpoint", server.url,
                          "--name", "fail", "--max-attempts", "1", *extra, env=env)
        received = list(server.received)
    sent = b"".join(str(r.headers).encode() for r in received)  # the scan is not vacuous
    expected = FILE_TOKEN if token_file else SECURITY_TOKEN if "aksk" in kind else AUTH_TOKEN
    assert expected.encode() in sent
    assert (plain.returncode, run.returncode) == (1, 1), run.stderr.decode()
    assert [p.returncode for p in plans] == [1, 1]
    assert (listed.returncode, listed_out.returncode, failed.returncode) == (0, 0, 1)
    scan.check()  # every secret is gone; and the marker shows where it was
    plain_records, records = ({r["task_id"]: r for r in (orjson.loads(x) for x in (
        scan.work / name).read_bytes().splitlines())} for name in ("plain.jsonl", "out.jsonl"))
    for task_id, record in plain_records.items():  # the write's own answers
        assert record["request_id"] == "[redacted]", record
        if not task_id.startswith("ok"):
            assert record["error_code"] in ("E.[redacted]", "http_302"), record
            assert MARK.decode() in record["error_msg"], record
    assert "127.0.0.1:9/[redacted]/[redacted]/x " in plain_records["moved-0"]["error_msg"]
    assert records["fail-0"]["error_code"] == "E.[redacted]"  # the reads' answers
    assert MARK.decode() in records["fail-1"]["error_msg"]
    assert records["ok-1"]["error_code"] == "verify_mismatch"
    assert MARK.decode() in records["ok-1"]["error_msg"]
    assert all(MARK in p.stdout for p in plans)
    assert all(MARK in data for data in (listed.stdout, (scan.work / "fleet.jsonl").read_bytes()))
    assert MARK in failed.stderr
