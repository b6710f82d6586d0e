"""The container (CONTRACT.md sections 1 and 11): the repository's Dockerfile, built and
run with podman as a user would run it.

No registry is reachable from the test machines, so the Dockerfile's bases are made
locally from Debian packages (scripts/container-base, mmdebstrap) and given as build
arguments; the build's pip reaches PyPI through the host's network (`--network host`).
The container runs read-only, with a tmpfs at /var/lib/splitter and the config mounted
read-only at /etc/splitter/splitter.yaml, in the host's network namespace, so that every
address involved is on the loopback: the backends are the session's Flask backends on
127.0.0.1, and "the admin API on loopback inside" is checked from inside the container.

How podman runs here (root, no systemd): runc, cgroupfs, the overlay storage driver on
ext4. Two flags are needed on such machines and harmless elsewhere: `--ulimit` with
values at or below this process's own limits (podman's defaults, 1048576 open files,
cannot be set without CAP_SYS_RESOURCE), and `--health-interval=disable` (podman would
schedule the HEALTHCHECK with a systemd timer; `podman healthcheck run` still runs it).

Skipped only when podman is missing or cannot run a container at all, with the reason;
scripts/system-packages (called by scripts/test and .ci/run) installs it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    LOCALHOST,
    REPO_ROOT,
    Backend,
    free_port,
    http_request,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN_BASE = "localhost/splitter-base:bookworm"
BUILD_BASE = "localhost/splitter-build-base:bookworm"
IMAGE = "localhost/splitter:test"
STATE_DIR = "/var/lib/splitter"
CONFIG_IN_IMAGE = "/etc/splitter/splitter.yaml"
GRACE = 5  # shutdown.grace of the container's config, seconds
START = {"blue": 90, "green": 0, "canary": 10}


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


def run_flags() -> list[str]:
    """Flags every `podman run` here needs (see the module docstring)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    return [
        "--network=host",
        f"--ulimit=nofile={nofile}:{nofile}",
        "--ulimit=nproc=4096:4096",  # lowering is always allowed
        "--health-interval=disable",
    ]


def test_the_readme_runs_podman_with_these_flags() -> None:
    """The README's podman command is the one that works here: the flags of run_flags()
    (the open-files limit is the machine's, so only its kind is compared)."""
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("\npodman run ")
    command = " ".join(readme[start : readme.index("\n```", start)].replace("\\", " ").split())
    for flag in run_flags():
        name, value = flag.split("=", 1)
        if name == "--ulimit":
            assert f"--ulimit {value.split('=')[0]}=" in command, (flag, command)
        else:
            assert f"{name} {value}" in command or flag in command, (flag, command)


# --------------------------------------------------------------------------- the image


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    """The Dockerfile built on the local Debian bases; skips when podman cannot run."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (scripts/system-packages installs it as root)")
    made = subprocess.run(
        [str(REPO_ROOT / "scripts" / "container-base")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, f"scripts/container-base failed:\n{made.stderr[-4000:]}"
    probe = podman("run", "--rm", *run_flags(), RUN_BASE, "true", check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"podman cannot run containers on this machine: {reason}")

    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    started = time.monotonic()
    podman(
        "build",
        "--format=docker",  # the OCI format has no HEALTHCHECK
        "--network=host",  # pip reaches PyPI as the host does
        "--pull=never",
        "--layers=false",  # no cache of the build stage left behind, untagged, at each run
        f"--build-arg=BASE={RUN_BASE}",
        f"--build-arg=BUILD_BASE={BUILD_BASE}",
        "--tag",
        IMAGE,
        str(REPO_ROOT),
        timeout=600,
    )
    print(f"image built in {time.monotonic() - started:.1f} s")
    new = podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if old and old != new:  # the previous build of this tag, now untagged
        podman("rmi", old, check=False)
    yield IMAGE


def splitter_config(pools: Mapping[str, Backend], ports: Mapping[str, int]) -> dict[str, Any]:
    return {
        "listen": f"{LOCALHOST}:{ports['proxy']}",
        "admin": {"listen": f"{LOCALHOST}:{ports['admin']}"},
        "metrics": {"listen": f"{LOCALHOST}:{ports['metrics']}"},
        "pools": {
            name: {"weight": START[name], "backends": [backend.url]}
            for name, backend in pools.items()
        },
        "sticky": {"cookie": "splitter"},  # its key is generated and kept in the state file
        "health_check": {"interval": "200ms", "healthy_threshold": 1, "unhealthy_threshold": 1},
        "state_file": "./splitter-state.json",  # relative: in the working directory
        "shutdown": {"accept_grace": "0s", "grace": f"{GRACE}s"},
    }


class Container:
    def __init__(self, name: str, ports: Mapping[str, int]) -> None:
        self.name = name
        self.proxy_url = f"http://{LOCALHOST}:{ports['proxy']}"
        self.admin_url = f"http://{LOCALHOST}:{ports['admin']}"
        self.metrics_url = f"http://{LOCALHOST}:{ports['metrics']}"

    def exec(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *args, check=check)

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()


def start_container(
    image: str, pools: Mapping[str, Backend], workdir: Path, name: str
) -> Container:
    ports = {"proxy": free_port(), "admin": free_port(), "metrics": free_port()}
    config = write_config(workdir / "splitter.yaml", splitter_config(pools, ports))
    config.chmod(0o644)  # read by the container's user
    podman("rm", "--force", name, check=False)
    podman(
        "run",
        "--detach",
        "--name",
        name,
        *run_flags(),
        "--read-only",
        "--tmpfs",
        f"{STATE_DIR}:rw,U",  # U: owned by the container's user (docker: uid=10001,gid=10001)
        "--volume",
        f"{config}:{CONFIG_IN_IMAGE}:ro",
        "--env",
        f"SPLITTER_HEALTH_URL=http://{LOCALHOST}:{ports['metrics']}/healthz",
        image,
    )
    container = Container(name, ports)

    def ready() -> bool:
        if container.inspect("{{.State.Running}}") != "true":
            raise AssertionError(f"the container stopped:\n{container.logs()}")
        return http_request(container.metrics_url + "/readyz", timeout=1)[0] == 200

    wait_until(ready, timeout=30, message=f"the container's /readyz is 200: {container.logs()}")
    return container


@pytest.fixture(scope="module")
def running(
    image: str, three_pools: dict[str, Backend], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    container = start_container(
        image, three_pools, tmp_path_factory.mktemp("container"), f"splitter-test-{os.getpid()}"
    )
    try:
        yield container
    finally:
        print(f"--- container logs:\n{container.logs()[-4000:]}")
        podman("rm", "--force", "--time=1", container.name, check=False)


# --------------------------------------------------------------------------- checks


def test_runs_as_a_non_root_user(running: Container) -> None:
    assert running.inspect("{{.Config.User}}") == "10001:10001"
    status = running.exec("cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids and all(uid != "0" for uid in uids), uids
    assert running.exec("cat", "/proc/1/cmdline").stdout.split("\0")[1:3] == [
        "/opt/splitter/bin/splitter",
        "run",
    ]


def test_root_file_system_is_read_only(running: Container) -> None:
    assert running.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    result = running.exec("sh", "-c", "echo x > /opt/splitter/x", check=False)
    assert result.returncode != 0 and "Read-only file system" in result.stderr, result


def test_requests_are_proxied(running: Container) -> None:
    seen = set()
    for _ in range(40):
        status, headers, body = http_request(running.proxy_url + "/")
        assert status == 200, body
        assert headers.get("set-cookie", "").startswith("splitter=")
        seen.add(body.decode())
    assert seen == {"blue", "canary"}


def test_metrics_are_served_on_the_metrics_port(running: Container) -> None:
    http_request(running.proxy_url + "/")
    status, headers, body = http_request(running.metrics_url + "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert b"splitter_requests_total{" in body
    assert b'splitter_pool_weight{pool="blue",route="default"} 90.0' in body
    assert http_request(running.metrics_url + "/api/v1/weights")[0] == 404


def test_admin_api_answers_on_loopback_inside(running: Container) -> None:
    result = running.exec("splitter", "ctl", "--admin", running.admin_url, "--json", "weights")
    assert json.loads(result.stdout) == START
    line = next(ln for ln in running.logs().splitlines() if ln.startswith("splitter: listening"))
    assert f"admin on {running.admin_url}," in line, line


def test_the_build_is_compiled(running: Container, image: str) -> None:
    assert "(compiled)" in running.exec("splitter", "--version").stdout
    result = podman("run", "--rm", *run_flags(), "--read-only", image, "--version")
    assert "(compiled)" in result.stdout, result
    # and the final stage carries no compiler
    assert running.exec("sh", "-c", "command -v gcc cc", check=False).returncode != 0


def test_state_file_is_written_under_var_lib_splitter(running: Container) -> None:
    path = f"{STATE_DIR}/splitter-state.json"
    first = json.loads(running.exec("cat", path).stdout)
    assert len(first["cookie_secret"]) == 64  # generated at start and kept
    change = running.exec(
        "splitter", "ctl", "--admin", running.admin_url, "--json", "set", "canary=20", "blue=80"
    )
    assert json.loads(change.stdout) == {"blue": 80, "green": 0, "canary": 20}
    saved = json.loads(running.exec("cat", path).stdout)
    assert saved["runtime"]["weights"] == {"blue": 80, "green": 0, "canary": 20}
    assert saved["cookie_secret"] == first["cookie_secret"]
    owner = running.exec("stat", "-c", "%u %a", path).stdout.split()
    assert owner == ["10001", "600"], owner
    running.exec("splitter", "ctl", "--admin", running.admin_url, "set", "canary=10", "blue=90")


def test_the_healthcheck_passes(running: Container) -> None:
    assert "/healthz" in running.inspect("{{json .Config.Healthcheck.Test}}")
    result = podman("healthcheck", "run", running.name, check=False)
    assert result.returncode == 0, result
    assert running.inspect("{{.State.Health.Status}}") == "healthy"


def test_sigterm_exits_0_within_the_grace(
    image: str, three_pools: dict[str, Backend], tmp_path: Path
) -> None:
    """`podman stop` sends SIGTERM: /readyz turns 503, the request in flight finishes,
    and splitter (PID 1) exits 0 well before podman would send SIGKILL."""
    container = start_container(image, three_pools, tmp_path, f"splitter-stop-{os.getpid()}")
    try:
        answers: list[Any] = []

        def slow() -> None:
            try:
                answers.append(http_request(container.proxy_url + "/slow?seconds=2", timeout=15))
            except Exception as exc:  # reported below
                answers.append(exc)

        flight = threading.Thread(target=slow)
        flight.start()
        time.sleep(0.5)  # the request is at the backend
        started = time.monotonic()
        stop = podman("stop", f"--time={GRACE + 10}", container.name, timeout=GRACE + 30)
        took = time.monotonic() - started
        flight.join(15)
        assert stop.returncode == 0
        assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
        assert took < GRACE + 2, f"stopped after {took:.1f} s"
        assert not isinstance(answers[0], Exception), answers
        status, headers, body = answers[0]
        assert (status, body) == (200, b"slow")
        assert headers.get("connection", "").lower() == "close"
        assert "stopped" in container.logs()
    finally:
        print(f"--- container logs:\n{container.logs()[-4000:]}")
        podman("rm", "--force", "--time=1", container.name, check=False)
