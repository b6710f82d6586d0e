"""The command line (CONTRACT.md section 1): `splitter check`, `splitter run`, `splitter demo`.

Every expected failure is exit status 2 with exactly one line on stderr and no traceback
(`check` lists one line per problem).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from splitter import __version__
from tests.support import (
    REPO_ROOT,
    _child_env,
    _kill_group,
    free_port,
    http_request,
    run_cli,
    wait_until,
)

GOOD = """\
listen: 127.0.0.1:{port}
admin:
  listen: 127.0.0.1:{admin}
pools:
  blue:
    weight: 90
    backends: [http://127.0.0.1:5001]
  canary:
    weight: 10
    backends: [http://127.0.0.1:5003]
state_file: ./state.json
"""

NEGATIVE_WEIGHT = """\
listen: 127.0.0.1:8080
pools:
  blue:
    weight: 90
    backends:
      - http://127.0.0.1:5001
  canary:
    weight: -5
    backends: [http://127.0.0.1:5003]
"""
NEGATIVE_WEIGHT_LINE = 8

SEVERAL_ERRORS = """\
listen: 127.0.0.1:8080
pools:
  blue:
    weight: 90
    backends: [http://127.0.0.1:5001]
  canary:
    weight: -1
    backends: [http://127.0.0.1:5003]
timeouts:
  connect: soon
colour: blue
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def good_config(tmp_path: Path, name: str = "good.yaml", **ports: int) -> Path:
    port = ports.get("port") or free_port()
    admin = ports.get("admin") or free_port()
    return write(tmp_path, name, GOOD.format(port=port, admin=admin))


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *expect: str) -> str:
    """Exit 2, exactly one non-empty stderr line, no traceback; returns that line."""
    stderr = result.stderr
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{stderr}"
    for text in expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


@contextlib.contextmanager
def listening_socket(port: int, host: str = "127.0.0.1") -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR: the port may still hold TIME_WAIT connections from an earlier test.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(8)
        yield sock
    finally:
        sock.close()


class Proc:
    """`python -m splitter ARGS` in its own session, stderr to a file; always killed by
    `kill()` (the fixture below does it at teardown)."""

    def __init__(self, args: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.stderr_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
        self.stdout_path = cwd / f"stdout-{time.monotonic_ns()}.txt"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "splitter", *args],
                cwd=cwd,
                env=_child_env(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def wait_stderr(self, text: str, timeout: float = 20) -> None:
        def found() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}; stderr:\n{self.stderr()}")
            return text in self.stderr()

        try:
            wait_until(found, timeout, message=f"{text!r} on stderr")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstderr:\n{self.stderr()}") from None

    def kill(self) -> None:
        _kill_group(self.proc)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def start(
    procs: list[Proc], args: list[str], cwd: Path, env: Mapping[str, str] | None = None
) -> Proc:
    proc = Proc(args, cwd, env)
    procs.append(proc)
    return proc


# --------------------------------------------------------------------------- version


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert __version__ in out and "splitter" in out
    assert "Traceback" not in out


def test_console_script_is_the_same() -> None:
    script = Path(sys.executable).parent / "splitter"
    assert script.exists(), f"no console script at {script}"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout + result.stderr


def test_no_command_is_a_usage_error() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- check


def test_check_good_config(tmp_path: Path) -> None:
    path = good_config(tmp_path)
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr


def test_check_bundled_configs() -> None:
    for path in ("config/splitter.yaml", "config/demo.yaml"):
        result = run_cli("check", "-c", str(REPO_ROOT / path), env={"SPLITTER_ADMIN_TOKEN": ""})
        assert result.returncode == 0, (path, result.stderr)


def test_check_negative_weight_names_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", NEGATIVE_WEIGHT)
    assert NEGATIVE_WEIGHT.splitlines()[NEGATIVE_WEIGHT_LINE - 1].strip() == "weight: -5"
    result = run_cli("check", "-c", str(path))
    line = assert_one_line_failure(
        result, f"pools.canary.weight (line {NEGATIVE_WEIGHT_LINE}): must be >= 0"
    )
    assert str(path) in line or "bad.yaml" in line  # which file


@pytest.mark.parametrize("weight", ["1e20", "1000000.5", "100000000000000000000000"])
def test_check_weight_above_a_million_names_path_and_line(tmp_path: Path, weight: str) -> None:
    text = NEGATIVE_WEIGHT.replace("weight: -5", f"weight: {weight}")
    path = write(tmp_path, "big.yaml", text)
    result = run_cli("check", "-c", str(path))
    assert_one_line_failure(
        result, f"pools.canary.weight (line {NEGATIVE_WEIGHT_LINE}): must be <= 1000000"
    )
    # a million itself is a weight
    path = write(tmp_path, "million.yaml", NEGATIVE_WEIGHT.replace("weight: -5", "weight: 1e6"))
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr


def alias_bomb(levels: int) -> str:
    """A "billion laughs" of `levels` levels of ten aliases each, used as backends."""
    lines = ["listen: 127.0.0.1:8080", 'l0: &l0 ["http://127.0.0.1:5001"]']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    lines += ["pools:", "  blue:", "    weight: 1", f"    backends: *l{levels}"]
    return "\n".join(lines) + "\n"


def check_with_peak_memory(path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """`splitter check -c PATH` and the peak RSS (bytes) of that process alone."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-m', 'splitter', 'check', '-c', sys.argv[1]],"
        " capture_output=True, text=True, timeout=30)\n"  # kills the check when it hangs
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    *lines, peak = result.stderr.splitlines()
    result.stderr = "\n".join(lines) + "\n"
    return result, int(peak) * 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.parametrize("levels", [5, 9])
def test_check_alias_bomb_fails_fast_in_little_memory(tmp_path: Path, levels: int) -> None:
    _, baseline = check_with_peak_memory(good_config(tmp_path))
    path = write(tmp_path, "bomb.yaml", alias_bomb(levels))
    started = time.monotonic()
    result, peak = check_with_peak_memory(path)
    elapsed = time.monotonic() - started
    assert_one_line_failure(
        result, "l5 (line 7): expands to more than 100000 YAML nodes with its aliases"
    )
    assert elapsed < 10, elapsed  # two process starts; the check itself takes milliseconds
    assert peak < baseline + 20 * 2**20, (peak, baseline)


def test_run_alias_bomb_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.yaml", alias_bomb(9))
    result = run_cli("run", "-c", str(path), timeout=30)
    assert_one_line_failure(result, "l5 (line 7): expands to more than 100000 YAML nodes")


def test_check_config_over_1_mib_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "big.yaml", GOOD.format(port=1, admin=2) + "#" * 2**20 + "\n")
    assert_one_line_failure(run_cli("check", "-c", str(path)), "larger than 1 MiB")


def test_check_lists_every_error(tmp_path: Path) -> None:
    path = write(tmp_path, "several.yaml", SEVERAL_ERRORS)
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) >= 3, result.stderr
    text = result.stderr
    assert "pools.canary.weight (line 7): must be >= 0" in text
    assert "timeouts.connect (line 10)" in text
    assert "colour (line 11)" in text and "unknown key" in text
    # in file order
    order = [
        text.index("pools.canary.weight"),
        text.index("timeouts.connect"),
        text.index("colour"),
    ]
    assert order == sorted(order)


def test_check_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run_cli("check", "-c", str(missing))
    assert_one_line_failure(result, "nope.yaml")


def test_check_non_loopback_admin_without_token(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "admin.yaml",
        GOOD.format(port=8080, admin=9901).replace("127.0.0.1:9901", "0.0.0.0:9901"),
    )
    result = run_cli("check", "-c", str(path))
    assert_one_line_failure(result, "admin.token")


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_token_shorter_than_16_characters_is_refused(tmp_path: Path, command: str) -> None:
    admin = free_port()
    text = GOOD.format(port=free_port(), admin=admin).replace(
        f"127.0.0.1:{admin}\n", f"127.0.0.1:{admin}\n  token: ${{SPLITTER_ADMIN_TOKEN}}\n"
    )
    path = write(tmp_path, "short-token.yaml", text)
    env = {"SPLITTER_ADMIN_TOKEN": "fifteen-chars-x"}
    result = run_cli(command, "-c", str(path), cwd=tmp_path, timeout=20, env=env)
    assert_one_line_failure(result, "admin.token (line 4): must be at least 16 characters")
    assert "fifteen-chars-x" not in result.stderr
    env = {"SPLITTER_ADMIN_TOKEN": "sixteen-chars-xy"}
    assert run_cli("check", "-c", str(path), cwd=tmp_path, env=env).returncode == 0


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_duration_over_30_days_is_refused(tmp_path: Path, command: str) -> None:
    text = GOOD.format(port=free_port(), admin=free_port())
    text += 'rollouts:\n  analysis:\n    warmup: "' + "9" * 400 + '"\n'
    path = write(tmp_path, "long-warmup.yaml", text)
    result = run_cli(command, "-c", str(path), cwd=tmp_path, timeout=20)
    assert_one_line_failure(
        result, "rollouts.analysis.warmup (line 14): must be at most 30 days (720h)"
    )


def test_check_uses_splitter_config_env(tmp_path: Path) -> None:
    good = good_config(tmp_path)
    bad = write(tmp_path, "bad.yaml", NEGATIVE_WEIGHT)
    result = run_cli("check", env={"SPLITTER_CONFIG": str(good)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("check", env={"SPLITTER_CONFIG": str(bad)}, cwd=tmp_path)
    assert_one_line_failure(result, "pools.canary.weight")
    # -c wins over the environment
    result = run_cli("check", "-c", str(good), env={"SPLITTER_CONFIG": str(bad)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_check_default_path_is_config_splitter_yaml(tmp_path: Path) -> None:
    env = {"SPLITTER_CONFIG": ""}
    result = run_cli("check", env=env, cwd=tmp_path)
    assert_one_line_failure(result, "config/splitter.yaml")
    (tmp_path / "config").mkdir()
    good_config(tmp_path / "config", "splitter.yaml")
    result = run_cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- run failures


def test_run_missing_config(tmp_path: Path) -> None:
    result = run_cli("run", "-c", str(tmp_path / "missing.yaml"), timeout=20)
    assert_one_line_failure(result, "missing.yaml")


def test_run_invalid_config(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", NEGATIVE_WEIGHT)
    result = run_cli("run", "-c", str(path), timeout=20)
    assert_one_line_failure(result, "pools.canary.weight")


def test_run_invalid_config_several_errors_is_still_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "several.yaml", SEVERAL_ERRORS)
    result = run_cli("run", "-c", str(path), timeout=20)
    assert_one_line_failure(result, "pools.canary.weight")


def test_run_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", "listen: 127.0.0.1:8080\npools: [unclosed\n")
    result = run_cli("run", "-c", str(path), timeout=20)
    assert_one_line_failure(result)


def test_run_proxy_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    path = good_config(tmp_path, port=port)
    with listening_socket(port):
        result = run_cli("run", "-c", str(path), cwd=tmp_path, timeout=20)
    assert_one_line_failure(result, str(port))


def test_run_admin_port_in_use(tmp_path: Path) -> None:
    admin = free_port()
    path = good_config(tmp_path, admin=admin)
    with listening_socket(admin):
        result = run_cli("run", "-c", str(path), cwd=tmp_path, timeout=20)
    assert_one_line_failure(result, str(admin))


def test_run_admin_on_all_interfaces_without_token(tmp_path: Path) -> None:
    admin = free_port()
    text = GOOD.format(port=free_port(), admin=admin).replace(
        f"127.0.0.1:{admin}", f"0.0.0.0:{admin}"
    )
    path = write(tmp_path, "open-admin.yaml", text)
    result = run_cli(
        "run", "-c", str(path), cwd=tmp_path, timeout=20, env={"SPLITTER_ADMIN_TOKEN": ""}
    )
    assert_one_line_failure(result, "admin")


def test_run_state_file_that_cannot_be_written(tmp_path: Path) -> None:
    """As with a read-only root file system and no writable state directory: one line,
    exit 2. (The tests run as root, whom permissions do not stop: the state file's
    directory is a dangling link, which no one can create files in.)"""
    (tmp_path / "not-a-dir").symlink_to(tmp_path / "nowhere")
    text = GOOD.format(port=free_port(), admin=free_port()).replace(
        "./state.json", "./not-a-dir/state.json"
    )
    path = write(tmp_path, "state-nowhere.yaml", text)
    result = run_cli("run", "-c", str(path), cwd=tmp_path, timeout=20)
    line = assert_one_line_failure(result, "cannot write the state file")
    assert str(tmp_path / "not-a-dir" / "state.json") in line


def test_run_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("run", "--no-such-option", cwd=tmp_path, timeout=20)
    assert_one_line_failure(result)


# --------------------------------------------------------------------------- run and signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_on_idle_run_exits_0_quickly(tmp_path: Path, procs: list[Proc], sig: int) -> None:
    port, admin = free_port(), free_port()
    path = good_config(tmp_path, port=port, admin=admin)
    proc = start(procs, ["run", "-c", str(path)], tmp_path)
    proc.wait_stderr("splitter: listening", timeout=15)
    wait_until(lambda: http_request(f"http://127.0.0.1:{admin}/healthz", timeout=1)[0] == 200, 5)
    began = time.monotonic()
    proc.proc.send_signal(sig)
    try:
        code = proc.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running 5s after {sig!r}; stderr:\n{proc.stderr()}") from None
    assert code == 0, f"exit {code}; stderr:\n{proc.stderr()}"
    assert time.monotonic() - began < 3, "an idle proxy stops at once"
    assert "Traceback" not in proc.stderr()
    # the ports are free again
    with listening_socket(port), listening_socket(admin):
        pass


def test_run_uses_splitter_config_env(tmp_path: Path, procs: list[Proc]) -> None:
    port, admin = free_port(), free_port()
    path = good_config(tmp_path, "from-env.yaml", port=port, admin=admin)
    proc = start(procs, ["run"], tmp_path, env={"SPLITTER_CONFIG": str(path)})
    proc.wait_stderr("splitter: listening", timeout=15)
    line = next(ln for ln in proc.stderr().splitlines() if "splitter: listening" in ln)
    assert f":{port}" in line and f":{admin}" in line, line
    status, _, _ = http_request(f"http://127.0.0.1:{admin}/healthz")
    assert status == 200
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(10) == 0


# --------------------------------------------------------------------------- demo

DEMO_PORTS = (8080, 9901, 5001, 5002, 5003, 5004, 5005, 5006, 5007, 5008, 5009)


def _assert_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            pytest.fail(f"`splitter demo` needs port {port}, which is busy here: {exc}")


def test_demo(tmp_path: Path, procs: list[Proc]) -> None:
    for port in DEMO_PORTS:
        _assert_port_free(port)
    proc = start(procs, ["demo"], tmp_path)
    try:
        proc.wait_stderr("splitter demo:", timeout=20)
        text = proc.stderr()
        assert "http://127.0.0.1:8080" in text and "http://127.0.0.1:9901" in text, text
        assert "curl" in text, text

        counts: Counter[str] = Counter()
        for _ in range(200):
            status, headers, body = http_request("http://127.0.0.1:8080/", timeout=5)
            assert status == 200, (status, body)
            counts[body.decode().strip()] += 1
            assert "set-cookie" in headers, (
                "the demo config is sticky: a fresh client gets a cookie"
            )
        assert counts["green"] == 0, dict(counts)
        assert counts["blue"] > 0 and counts["canary"] > 0, dict(counts)
        assert set(counts) == {"blue", "canary"}, dict(counts)
        assert 0.10 <= counts["canary"] / 200 <= 0.30, f"about 80/20 expected: {dict(counts)}"

        for _ in range(5):
            status, headers, body = http_request(
                "http://127.0.0.1:8080/", headers={"X-Splitter-Pool": "green"}
            )
            assert status == 200 and body.decode().strip() == "green"
            assert "set-cookie" not in headers

        # the second route, api: /api and below, from its own backends, at 90/10
        api: Counter[str] = Counter()
        for i in range(100):
            path = ("/api", "/api/", f"/api/items/{i}?q=1")[i % 3]
            status, _, body = http_request(f"http://127.0.0.1:8080{path}", timeout=5)
            assert status == 200, (path, status, body)
            api[body.decode().strip()] += 1
        assert set(api) == {"api-blue", "api-canary"}, dict(api)
        assert api["api-blue"] > api["api-canary"], dict(api)
        # a path that only starts with the same letters is the route default's
        status, _, body = http_request("http://127.0.0.1:8080/apix", timeout=5)
        assert status == 200 and body.decode().strip() in {"blue", "canary"}, body
        status, _, body = http_request("http://127.0.0.1:9901/api/v1/routes")
        routes = json.loads(body)
        assert list(routes) == ["default", "api", "prices", "greeter"], routes
        assert routes["api"]["weights"] == {"api-blue": 90, "api-canary": 10}
        assert routes["default"]["segments"] == [
            {"pool": "canary", "header": {"name": "X-Beta", "value": "1"}}
        ]

        status, _, _ = http_request("http://127.0.0.1:9901/healthz")
        assert status == 200

        proc.proc.send_signal(signal.SIGTERM)
        try:
            code = proc.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"demo still running after SIGTERM:\n{proc.stderr()}") from None
        assert code == 0, f"exit {code}; stderr:\n{proc.stderr()}"
        assert "Traceback" not in proc.stderr()
    finally:
        proc.kill()
    # it left no state file behind (each run starts afresh)
    assert not list(tmp_path.glob("*.json")), list(tmp_path.iterdir())


@pytest.mark.slow
def test_demo_shows_a_faulty_canary_rolled_back(tmp_path: Path, procs: list[Proc]) -> None:
    """The README's walk-through: `splitter demo --load 60 --faulty canary`, a rollout of
    the canary, rolled back on its own; the same with a healthy canary is promoted."""
    for port in DEMO_PORTS:
        _assert_port_free(port)
    proc = start(procs, ["demo", "--load", "60", "--faulty", "canary"], tmp_path)
    try:
        proc.wait_stderr("splitter demo:", timeout=20)
        assert "canary answers 500" in proc.stderr()
        admin = ["--admin", "http://127.0.0.1:9901"]
        started = run_cli("ctl", *admin, "rollout", "start", "canary", "--steps", "30,60,100")
        assert started.returncode == 0, started.stderr
        watched = run_cli("ctl", *admin, "rollout", "status", "--watch", timeout=60)
        assert watched.returncode == 1, watched.stdout  # it ended, and not promoted
        assert "rolled_back" in watched.stdout and "bad rate" in watched.stdout
        status, _, body = http_request("http://127.0.0.1:9901/api/v1/weights")
        assert json.loads(body)["canary"] == 0
        # the backend's fault can be lifted while it runs; then a rollout goes through
        status, _, _ = http_request(
            "http://127.0.0.1:5003/fault", "POST", b'{"fail_rate": 0}', timeout=5
        )
        assert status == 200
        again = run_cli("ctl", *admin, "rollout", "start", "canary", "--steps", "50,100",
                        "--hold", "2s")  # fmt: skip
        assert again.returncode == 0, again.stderr
        watched = run_cli("ctl", *admin, "rollout", "status", "--watch", timeout=90)
        assert watched.returncode == 0, watched.stdout
        assert "promoted" in watched.stdout
    finally:
        proc.kill()


def test_config_demo_yaml_is_the_packaged_demo_config() -> None:
    """config/demo.yaml (next to config/splitter.yaml, where people look) is the file
    `splitter demo` uses, not a copy that could drift from it."""
    assert (REPO_ROOT / "config" / "demo.yaml").read_bytes() == (
        REPO_ROOT / "splitter" / "demo.yaml"
    ).read_bytes()


def printed_shell_lines(text: str, contains: str) -> list[str]:
    """The curl lines the demo printed (after a label or without) that contain `contains`,
    without their trailing comment."""
    lines = (re.sub(r"^\s*[a-z]+:\s+", "", line).strip() for line in text.splitlines())
    return [
        line.split("  #")[0].strip()
        for line in lines
        if line.startswith(("curl ", "for ", "printf ")) and contains in line
    ]


def run_shell(line: str) -> str:
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                            check=True)  # fmt: skip
    return result.stdout


def test_the_demo_s_printed_line_for_the_second_route(tmp_path: Path, procs: list[Proc]) -> None:
    """The welcome lists both routes; its line for the route api, run as printed, reaches
    only that route's backends; its `splitter ctl --route api` line shows that route."""
    config, _ = demo_on_free_ports(tmp_path)
    proc = start(procs, ["demo", "--config", str(config)], tmp_path)
    proc.wait_stderr("stop:")
    text = proc.stderr()
    assert "default /: blue 80, green 0, canary 20; X-Beta: 1 -> canary" in text, text
    assert "api /api: api-blue 90, api-canary 10" in text, text
    # The gRPC line, run as printed (curl over HTTP/2 to the h2c route greeter).
    [hello] = printed_shell_lines(text, "/demo.Greeter/Hello")
    assert run_shell(hello).strip() in {"greeter-blue: hello you", "greeter-canary: hello you"}
    [loop] = [line for line in printed_shell_lines(text, "/api/") if line.startswith("for ")]
    counts = Counter(run_shell(loop).split()[1::2])
    assert set(counts) <= {"api-blue", "api-canary"} and "api-blue" in counts, counts
    [weights] = [
        c for c in printed_commands(text, "splitter ctl") if "--route" in c and c[-1] == "weights"
    ]
    shown = run_cli(*weights)
    assert shown.returncode == 0, shown.stderr
    assert [ln.split()[0] for ln in shown.stdout.splitlines()] == ["POOL", "api-blue", "api-canary"]
    [routes] = [c for c in printed_commands(text, "splitter ctl") if c[-1] == "routes"]
    shown = run_cli(*routes)
    assert [ln.split()[0] for ln in shown.stdout.splitlines()] == [
        "ROUTE",
        "default",
        "api",
        "prices",
        "greeter",
    ]
    stop_demo(proc)


def test_the_demo_s_shadow_traffic(tmp_path: Path, procs: list[Proc]) -> None:
    """The route prices: its printed curl line reaches prices-blue only; its copy reaches
    prices-canary, whose answers differ in one field, /price, as the printed admin line
    shows."""
    config, _ = demo_on_free_ports(tmp_path)
    proc = start(procs, ["demo", "--config", str(config)], tmp_path)
    proc.wait_stderr("stop:")
    text = proc.stderr()
    assert "prices /prices: prices-blue 100, prices-canary 0; shadow -> prices-canary 100%" in text
    [item] = printed_shell_lines(text, "/prices/item-")
    for _ in range(5):
        answer = json.loads(run_shell(item))
        assert set(answer) == {"item", "price", "currency", "served_at"}, answer
    [shadow] = [c for c in printed_commands(text, "splitter ctl") if c[-1] == "shadow"]
    shown = run_cli(*shadow)
    assert shown.returncode == 0, shown.stderr
    assert "prices-canary" in shown.stdout and "/price" in shown.stdout, shown.stdout
    admin = shadow[shadow.index("--admin") + 1]

    def compared() -> dict[str, Any]:
        return dict(json.loads(http_request(f"{admin}/api/v1/routes/prices/shadow")[2]))

    wait_until(lambda: compared()["compared"] >= 5, timeout=10)
    state = compared()
    assert state["pool"] == "prices-canary"
    assert state["differ"] == state["compared"]
    assert state["fields"] == [{"field": "/price", "differ": state["compared"]}]
    stop_demo(proc)


def test_the_demo_s_printed_line_for_the_segment(tmp_path: Path, procs: list[Proc]) -> None:
    """The demo's segment: its printed curl line (X-Beta: 1), run as printed, reaches the
    canary every time, though the canary has 20% of the weight; without it, blue too."""
    config, _ = demo_on_free_ports(tmp_path)
    proc = start(procs, ["demo", "--config", str(config)], tmp_path)
    proc.wait_stderr("stop:")
    [line] = printed_shell_lines(proc.stderr(), "X-Beta")
    try:
        assert [run_shell(line).strip() for _ in range(20)] == ["canary"] * 20
        proxy = "http://" + yaml.safe_load(config.read_text())["listen"]
        status, headers, body = http_request(f"{proxy}/", headers={"X-Beta": "1"})
        assert (status, body.decode().strip()) == (200, "canary")
        assert "set-cookie" not in headers  # a segment needs no cookie, and sets none
    finally:
        stop_demo(proc)


def demo_on_free_ports(tmp_path: Path) -> tuple[Path, str]:
    """The bundled demo config with free ports (the demo's own are fixed, and other test
    runs on the machine may hold them): (its path, the admin URL)."""
    text = (REPO_ROOT / "splitter" / "demo.yaml").read_text()
    # in one pass, whole port numbers only: one at a time, a free port put in for 8080
    # (say 50021) would later be taken for 5002 followed by a 1
    free = {str(port): str(free_port()) for port in DEMO_PORTS}
    text = re.sub(r"127\.0\.0\.1:(\d+)\b", lambda m: f"127.0.0.1:{free.get(m[1], m[1])}", text)
    path = write(tmp_path, "demo.yaml", text)
    admin = yaml.safe_load(text)["admin"]["listen"]
    return path, f"http://{admin}"


def printed_commands(text: str, program: str) -> list[list[str]]:
    """The commands the demo printed that start with `program` ("splitter ctl", ...),
    after a label ("  try:  ") or without, as arguments after `splitter`."""
    lines = (re.sub(r"^\s*[a-z]+:\s+", "", line).strip() for line in text.splitlines())
    return [shlex.split(line)[1:] for line in lines if line.startswith(program + " ")]


def stop_demo(proc: Proc) -> None:
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(15) == 0, proc.stderr()


def test_a_second_demo_starts_clean(tmp_path: Path, procs: list[Proc]) -> None:
    """A rollout left by a first run does not block the second: each run keeps its state
    in a temporary directory of its own, removed when it stops. While a rollout is
    active, starting another is a 409 that names the way out."""
    config, admin = demo_on_free_ports(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    ctl = ["ctl", "--admin", admin]

    first = start(procs, ["demo", "--config", str(config)], tmp_path, env)
    first.wait_stderr("splitter demo:")
    started = run_cli(*ctl, "--json", "rollout", "start", "canary")
    assert started.returncode == 0, started.stderr
    rollout_id = json.loads(started.stdout)["id"]
    assert [p.name for p in tmp.glob("splitter-demo-*/*")] == ["state.json"]
    again = run_cli(*ctl, "rollout", "start", "canary")
    assert (again.returncode, again.stdout) == (1, ""), again
    assert again.stderr.splitlines() == [
        f"splitter ctl: 409: a rollout of canary is already progressing (id {rollout_id}); "
        "abort it first: splitter ctl rollout abort, or POST /api/v1/rollout/abort"
    ]
    stop_demo(first)
    assert list(tmp.iterdir()) == []  # its state went with it
    assert not list(tmp_path.glob("*.json"))

    second = start(procs, ["demo", "--config", str(config)], tmp_path, env)
    second.wait_stderr("splitter demo:")
    assert http_request(f"{admin}/api/v1/rollout")[0] == 404  # no rollout, not even the last
    status, _, body = http_request(f"{admin}/api/v1/weights")
    assert (status, json.loads(body)) == (200, {"blue": 80, "green": 0, "canary": 20})
    started = run_cli(*ctl, "--json", "rollout", "start", "canary")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["id"] != rollout_id
    stop_demo(second)


def test_demo_without_load_says_a_rollout_needs_it(tmp_path: Path, procs: list[Proc]) -> None:
    """Without --load nothing sends traffic, so a rollout would wait for ever: the printed
    rollout lines come after the command that makes traffic."""
    config, _ = demo_on_free_ports(tmp_path)
    proc = start(procs, ["demo", "--config", str(config), "--faulty", "canary"], tmp_path)
    proc.wait_stderr("stop:")
    text = proc.stderr()
    stop_demo(proc)
    assert "needs traffic" in text, text
    assert printed_commands(text, "splitter demo") == [
        ["demo", "--config", str(config), "--load", "60", "--faulty", "canary"]
    ]
    lines = [ln.strip() for ln in text.splitlines()]
    restart = next(i for i, ln in enumerate(lines) if ln.startswith("splitter demo "))
    start_line = next(i for i, ln in enumerate(lines) if " rollout start " in ln)
    assert restart < start_line, text  # first the traffic, then the rollout


@pytest.mark.slow
def test_the_demo_s_printed_lines_lead_to_a_promoted_rollout(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """A new user's walk-through, as printed: `splitter demo` says how to restart it with
    traffic; that demo's rollout lines, run as printed, end with the canary promoted."""
    config, admin = demo_on_free_ports(tmp_path)
    first = start(procs, ["demo", "--config", str(config)], tmp_path)
    first.wait_stderr("stop:")
    stop_demo(first)
    [again] = printed_commands(first.stderr(), "splitter demo")

    loaded = start(procs, again, tmp_path)
    loaded.wait_stderr("stop:")
    text = loaded.stderr()
    assert "needs traffic" not in text, text
    rollout = [c for c in printed_commands(text, "splitter ctl") if "rollout" in c]
    assert [c[3:5] for c in rollout] == [["rollout", "start"], ["rollout", "status"]], rollout
    started = run_cli(*rollout[0])
    assert started.returncode == 0, started.stderr
    watched = run_cli(*rollout[1], timeout=180)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "promoted" in watched.stdout
    status, _, body = http_request(f"{admin}/api/v1/weights")
    assert (status, json.loads(body)) == (200, {"blue": 0, "green": 0, "canary": 100})
    stop_demo(loaded)


@pytest.mark.slow
def test_the_readme_s_blue_green_walk_through_passes_its_preview(
    tmp_path: Path, procs: list[Proc]
) -> None:
    """The README's blue-green lines, pasted as written (on the demo's free ports): the
    override-header requests that curl sends count from the preview's start (no warmup:
    that is for weight changes), so it passes and switches."""
    readme = (REPO_ROOT / "README.md").read_text()
    start_line = next(ln for ln in readme.splitlines() if "--bluegreen --auto-promote" in ln)
    loop = next(ln for ln in readme.splitlines() if "X-Splitter-Pool: green" in ln and "seq" in ln)
    config, admin = demo_on_free_ports(tmp_path)
    proxy = "http://" + yaml.safe_load(config.read_text())["listen"]
    demo = start(procs, ["demo", "--config", str(config)], tmp_path)
    demo.wait_stderr("stop:")
    args = shlex.split(start_line.split("#")[0])[1:]
    started = run_cli(args[0], "--admin", admin, *args[1:])
    assert started.returncode == 0, started.stderr
    shell = loop.split("#")[0].replace("http://127.0.0.1:8080", proxy)
    subprocess.run(["bash", "-c", shell], check=True, timeout=120)
    status = wait_until(
        lambda: (
            (r := json.loads(http_request(f"{admin}/api/v1/rollout")[2]))["step"] == 1
            or r["status"] != "progressing"
        ),
        60,  # the judge's verdict, on a machine busy with other tests
    )
    rollout = json.loads(http_request(f"{admin}/api/v1/rollout")[2])
    assert status and rollout["status"] in ("progressing", "promoted"), rollout
    assert rollout["step"] == 1 and rollout["weights"]["green"] == 100, rollout
    assert any(h["what"] == "passed" for h in rollout["history"]), rollout["history"]
    stop_demo(demo)


def test_demo_port_in_use_is_one_line(tmp_path: Path) -> None:
    for port in DEMO_PORTS:
        _assert_port_free(port)
    with listening_socket(5002):
        result = run_cli("demo", cwd=tmp_path, timeout=20)
    assert_one_line_failure(result, "5002")
