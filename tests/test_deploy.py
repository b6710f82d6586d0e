"""The Kubernetes manifests (deploy/kubernetes/, CONTRACT.md section 11), offline.

Each kustomization is rendered (`kubectl kustomize` when kubectl is installed, else the
small renderer below, which the tests compare with kubectl where both exist), every
object is validated against the Kubernetes API schemas (kubernetes-validate, strict:
unknown fields are errors) for the oldest and the newest version we claim, the splitter
config in each ConfigMap passes `splitter check`, and the choices the manifests make are
checked as properties: probes on the metrics listener, the admin API on loopback,
restricted security contexts, resources, a PodDisruptionBudget, consistent grace periods,
and for `edge-tls` (docs/configuration.md#tls) the certificate's Secret mounted where the
config looks for it, as a directory that the kubelet can update.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from splitter.config import Config, is_loopback_host, parse
from tests.support import REPO_ROOT, run_cli

KUSTOMIZE_ROOT = REPO_ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = ["base", "edge", "edge-tls", "sidecar"]
# The oldest Kubernetes the manifests are for (the sidecar's preStop `sleep` is beta,
# on by default, from 1.30) and the newest whose schemas kubernetes-validate carries.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CONFIG_KEY = "splitter.yaml"
STATE_DIR = "/var/lib/splitter"
IMAGE_USER = 10001


# --------------------------------------------------------------------------- rendering


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


REPLACE = {"$patch": "replace"}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge, the part our patches use: mappings merge key by key; a list whose
    patch holds the item `{$patch: replace}` becomes the patch's other items; lists of
    mappings that all have a `name` merge item by name, in kustomize's order (the patch's
    items first, merged with the base's of the same name, then the base's others); and
    anything else is replaced by the patch."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(patch, list) and REPLACE in patch:
        return [copy.deepcopy(item) for item in patch if item != REPLACE]
    named = all(isinstance(item, dict) and "name" in item for item in [*base, *patch]) \
        if isinstance(base, list) and isinstance(patch, list) else False  # fmt: skip
    if named:
        olds = {item["name"]: item for item in base}
        merged = [
            _merge(olds[item["name"]], item) if item["name"] in olds else copy.deepcopy(item)
            for item in patch
        ]
        patched = {item["name"] for item in patch}
        return merged + [copy.deepcopy(item) for item in base if item["name"] not in patched]
    return copy.deepcopy(patch)


def _identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


def mini_kustomize(directory: Path) -> list[dict[str, Any]]:
    """A kustomization rendered with the subset of kustomize these manifests use:
    `resources` (files and directories holding a kustomization) and `patches` given by
    `path` (strategic merge, see _merge). Anything else is refused, not ignored."""
    spec = load_documents(directory / "kustomization.yaml")[0]
    unknown = set(spec) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{directory}: kustomization fields this renderer lacks: {unknown}"
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        objects += mini_kustomize(path) if path.is_dir() else load_documents(path)
    for patch_entry in spec.get("patches", []):
        assert set(patch_entry) == {"path"}, f"{directory}: patch form not supported"
        for patch in load_documents(directory / patch_entry["path"]):
            targets = [i for i, obj in enumerate(objects) if _identity(obj) == _identity(patch)]
            assert len(targets) == 1, f"{directory}: patch target {_identity(patch)} not found"
            objects[targets[0]] = _merge(objects[targets[0]], patch)
    return objects


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render(name: str) -> list[dict[str, Any]]:
    directory = KUSTOMIZE_ROOT / name
    if shutil.which("kubectl"):
        return kubectl_kustomize(directory)
    return mini_kustomize(directory)


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield request.param, render(request.param)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [obj for obj in by_kind(objects, kind) if obj["metadata"]["name"] == name]
    return found


# --------------------------------------------------------------------------- what splitter sees


def splitter_knows(key: str) -> bool:
    return key in Config.__dataclass_fields__


def config_text(configmap: dict[str, Any]) -> str:
    text = configmap["data"][CONFIG_KEY]
    assert isinstance(text, str)
    return text


def checkable(text: str, tls_pair: tuple[Path, Path] | None = None) -> tuple[str, dict[str, Any]]:
    """The config as this checkout of splitter can check it, and the sections it cannot
    yet (a section built apart, until it lands here, is taken out and checked on its own
    by the tests that use it).

    `tls` names files of a Secret that exists only in the pod: with `tls_pair` (a
    certificate and key made here) every pair is pointed at those files, so that `splitter
    check` reads real ones; without it, the section is set aside like an unknown one."""
    data = yaml.safe_load(text)
    set_aside = {
        key: data.pop(key) for key in ("store", "tls") if key in data and not splitter_knows(key)
    }
    if "tls" in data and tls_pair is None:
        set_aside["tls"] = data.pop("tls")
    elif "tls" in data and tls_pair is not None:
        cert, key = tls_pair
        data["tls"]["certificates"] = [
            {"cert": str(cert), "key": str(key)} for _ in data["tls"]["certificates"]
        ]
    changed = bool(set_aside) or "tls" in data
    return (yaml.safe_dump(data, sort_keys=False) if changed else text), set_aside


class SplitterPod:
    """A pod template that runs splitter, with its container and its parsed config."""

    def __init__(self, objects: list[dict[str, Any]], deployment: dict[str, Any]) -> None:
        self.deployment = deployment
        self.pod = deployment["spec"]["template"]
        self.spec = self.pod["spec"]
        (self.container,) = [c for c in self.spec["containers"] if is_splitter(c)]
        args = self.container["args"]
        assert args[0] == "run" and args[1] == "--config", args
        self.config_path = args[2]
        self.config_mount = mount_holding(self.container, self.config_path)
        volume = volume_named(self.spec, self.config_mount["name"])
        self.configmap = the(objects, "ConfigMap", volume["configMap"]["name"])
        assert Path(self.config_path).name == CONFIG_KEY
        self.raw_config: dict[str, Any] = yaml.safe_load(config_text(self.configmap))
        text, self.set_aside = checkable(config_text(self.configmap))
        self.config = parse(yaml.safe_load(text), env={})

    def port_number(self, port: int | str) -> int:
        if isinstance(port, int):
            return port
        (number,) = [p["containerPort"] for p in self.container["ports"] if p["name"] == port]
        return int(number)


def is_splitter(container: dict[str, Any]) -> bool:
    return str(container["image"]).split("/")[-1].startswith("splitter:")


def mount_holding(container: dict[str, Any], path: str) -> dict[str, Any]:
    mounts = [m for m in container.get("volumeMounts", []) if path.startswith(m["mountPath"] + "/")]
    assert len(mounts) == 1, (path, mounts)
    return mounts[0]


def volume_named(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (volume,) = [v for v in spec["volumes"] if v["name"] == name]
    return volume


def splitter_pods(objects: list[dict[str, Any]]) -> list[SplitterPod]:
    pods = [
        SplitterPod(objects, d)
        for d in by_kind(objects, "Deployment")
        if any(is_splitter(c) for c in d["spec"]["template"]["spec"]["containers"])
    ]
    assert pods, "no Deployment runs splitter"
    return pods


def self_signed_pair(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for localhost, made by the one command of
    docs/deployment.md#https-quick-start."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "tls.crt", directory / "tls.key"
    if not cert.exists():
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    return cert, key


# --------------------------------------------------------------------------- rendering and schemas


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_small_renderer_agrees_with_kubectl(name: str) -> None:
    """So that a machine without kubectl checks the same manifests."""
    directory = KUSTOMIZE_ROOT / name

    def key(obj: dict[str, Any]) -> tuple[str, str, str]:
        return _identity(obj)

    ours = sorted(mini_kustomize(directory), key=key)
    theirs = sorted(kubectl_kustomize(directory), key=key)
    assert ours == theirs


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    name, objects = rendered
    assert objects, name
    for obj in objects:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {_identity(obj)} for Kubernetes {version}: {exc}")


def test_every_splitter_config_passes_splitter_check(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, objects = rendered
    for pod in splitter_pods(objects):
        pair = self_signed_pair(tmp_path) if "tls" in pod.raw_config else None
        text, _ = checkable(config_text(pod.configmap), pair)
        path = tmp_path / f"{pod.configmap['metadata']['name']}.yaml"
        path.write_text(text)
        result = run_cli("check", "-c", str(path), env={"SPLITTER_ADMIN_TOKEN": ""})
        assert result.returncode == 0, f"{name}: {result.stderr}"
        # and with a token from the Secret, as in a pod that has one
        token = "t0ken-0123456789abcdef"
        result = run_cli("check", "-c", str(path), env={"SPLITTER_ADMIN_TOKEN": token})
        assert result.returncode == 0, f"{name}: {result.stderr}"


# --------------------------------------------------------------------------- splitter's pods


def test_probes_go_to_the_metrics_listener(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        metrics = pod.config.metrics.listen
        assert metrics is not None, "the manifests need metrics.listen"
        assert not is_loopback_host(metrics.host), "the kubelet must reach it"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = pod.container[probe]["httpGet"]
            assert get["path"] == path
            assert pod.port_number(get["port"]) == metrics.port
            assert pod.port_number(get["port"]) != pod.config.admin.listen.port
        annotations = pod.pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == metrics.port
        assert annotations["prometheus.io/path"] == "/metrics"


def test_the_admin_api_stays_on_loopback(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        admin = pod.config.admin.listen
        assert is_loopback_host(admin.host), admin
        exposed = [p["containerPort"] for c in pod.spec["containers"] for p in c.get("ports", [])]
        assert admin.port not in exposed
        for service in by_kind(objects, "Service"):
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert target != admin.port and target != "admin", service
        # the token comes from a Secret, through the variable the config names
        env = {e["name"]: e for e in pod.container["env"]}
        ref = env["SPLITTER_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"]
        assert (
            "${SPLITTER_ADMIN_TOKEN" in yaml.safe_load(config_text(pod.configmap))["admin"]["token"]
        )


def test_the_config_is_mounted_as_a_directory(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Hot reload follows the kubelet's `..data` swaps; a subPath mount is never updated."""
    _, objects = rendered
    for pod in splitter_pods(objects):
        assert "subPath" not in pod.config_mount and "subPathExpr" not in pod.config_mount
        assert pod.config_mount.get("readOnly") is True
        assert str(Path(pod.config_path).parent) == pod.config_mount["mountPath"]
        volume = volume_named(pod.spec, pod.config_mount["name"])
        assert "items" not in volume["configMap"]
        assert set(pod.configmap["data"]) == {CONFIG_KEY}
        for container in pod.spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert "subPath" not in mount, (container["name"], mount)


def test_state_is_on_an_empty_dir_under_var_lib_splitter(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        assert pod.config.state_file.startswith(STATE_DIR + "/"), pod.config.state_file
        mount = mount_holding(pod.container, pod.config.state_file)
        assert mount["mountPath"] == STATE_DIR
        assert "emptyDir" in volume_named(pod.spec, mount["name"])


def test_grace_periods_are_consistent(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        shutdown = pod.config.shutdown
        # kube-proxy, ingress controllers and load balancers take seconds to drop an
        # endpoint that the API server has already removed
        assert shutdown.accept_grace >= 3, shutdown
        assert shutdown.grace > 0
        termination = pod.spec["terminationGracePeriodSeconds"]
        assert termination > shutdown.accept_grace + shutdown.grace + 5, (termination, shutdown)
        # a container beside splitter (sidecar) outlives splitter's accept window
        for container in pod.spec["containers"]:
            if container is pod.container:
                continue
            sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert sleep >= shutdown.accept_grace, container["name"]
            assert sleep < termination


def test_resources_are_requested_and_limited(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for deployment in by_kind(objects, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert set(resources[kind]) >= {"cpu", "memory"}, (container["name"], kind)


def test_every_pod_is_restricted(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The Pod Security Standards' `restricted` level, and a read-only root file system."""
    _, objects = rendered
    for deployment in by_kind(objects, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        pod_context = spec["securityContext"]
        assert pod_context["runAsNonRoot"] is True, name
        assert pod_context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod_context.get("runAsUser", 1) != 0
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), (name, field)
        assert spec.get("automountServiceAccountToken") is False, name
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"configMap", "emptyDir", "secret"}, volume
        for container in [*spec["containers"], *spec.get("initContainers", [])]:
            context = container["securityContext"]
            where = (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert not context["capabilities"].get("add"), where
            assert context.get("runAsUser", 1) != 0, where
            assert "hostPort" not in str(container.get("ports", "")), where


def test_splitter_runs_as_the_image_user(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        user = pod.container.get("securityContext", {}).get("runAsUser") or pod.spec[
            "securityContext"
        ].get("runAsUser")
        assert user == IMAGE_USER
        assert pod.container["args"][0] == "run"


def test_a_disruption_budget_covers_splitter(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = rendered
    budgets = by_kind(objects, "PodDisruptionBudget")
    for pod in splitter_pods(objects):
        labels = pod.pod["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, pod.deployment["metadata"]["name"]
        spec = covering[0]["spec"]
        replicas = pod.deployment["spec"]["replicas"]
        # never a budget that blocks every drain
        if "maxUnavailable" in spec:
            assert spec["maxUnavailable"] >= 1
        else:
            assert spec["minAvailable"] < replicas


def test_the_service_sends_clients_to_the_proxy_port(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, objects = rendered
    for pod in splitter_pods(objects):
        labels = pod.pod["metadata"]["labels"]
        services = [
            s
            for s in by_kind(objects, "Service")
            if s["spec"]["selector"].items() <= labels.items()
        ]
        assert len(services) == 1
        (port,) = services[0]["spec"]["ports"]
        assert pod.port_number(port["targetPort"]) == pod.config.listen.port


# --------------------------------------------------------------------------- each shape


def test_edge_runs_three_replicas_sharing_a_redis() -> None:
    objects = render("edge")
    (pod,) = splitter_pods(objects)
    assert pod.deployment["spec"]["replicas"] == 3
    store = yaml.safe_load(config_text(pod.configmap))["store"]
    assert store == {"url": "redis://redis:6379/0", "prefix": "splitter"}
    service = the(objects, "Service", "redis")
    assert service["spec"]["ports"][0]["port"] == 6379
    redis = the(objects, "Deployment", "redis")
    assert redis["spec"]["template"]["metadata"]["labels"].items() >= (
        service["spec"]["selector"].items()
    )
    # the rest of the edge config is the base's
    (base_pod,) = splitter_pods(render("base"))
    edge_config = yaml.safe_load(config_text(pod.configmap))
    del edge_config["store"]
    assert edge_config == yaml.safe_load(config_text(base_pod.configmap))
    assert pod.container == base_pod.container


def test_base_has_one_replica() -> None:
    """Without a shared store, a change through one pod's admin API stays in that pod."""
    (pod,) = splitter_pods(render("base"))
    assert pod.deployment["spec"]["replicas"] == 1
    assert "store" not in yaml.safe_load(config_text(pod.configmap))


def test_sidecar_sends_the_stable_pool_to_the_app_on_localhost() -> None:
    objects = render("sidecar")
    (pod,) = splitter_pods(objects)
    (app,) = [c for c in pod.spec["containers"] if c is not pod.container]
    app_ports = {p["containerPort"] for p in app["ports"]}
    local = [b for p in pod.config.pools for b in p.backends if is_loopback_host(b.host)]
    assert local and all(b.port in app_ports for b in local)
    weighted = [p for p in pod.config.pools if p.weight > 0]
    assert weighted and all(is_loopback_host(b.host) for p in weighted for b in p.backends)
    # the app's own port is in no Service: every request goes through splitter
    for service in by_kind(objects, "Service"):
        for port in service["spec"]["ports"]:
            assert pod.port_number(port["targetPort"]) == pod.config.listen.port


def test_edge_tls_mounts_the_certificate_secret_where_the_config_reads_it() -> None:
    """A kubernetes.io/tls Secret (keys tls.crt and tls.key), as a directory: the kubelet
    swaps its `..data` link when cert-manager renews it, and splitter re-reads the files."""
    objects = render("edge-tls")
    (pod,) = splitter_pods(objects)
    tls = pod.raw_config["tls"]
    assert tls["min_version"] == "1.2"
    ((pair,),) = [tls["certificates"]]
    cert, key = Path(pair["cert"]), Path(pair["key"])
    assert (cert.name, key.name) == ("tls.crt", "tls.key")
    mount = mount_holding(pod.container, str(cert))
    assert mount is mount_holding(pod.container, str(key))
    assert cert.parent == key.parent == Path(mount["mountPath"])
    assert mount.get("readOnly") is True
    assert "subPath" not in mount and "subPathExpr" not in mount
    secret = volume_named(pod.spec, mount["name"])["secret"]
    assert "items" not in secret
    assert secret.get("optional", False) is False, "no pod without its certificate"
    # the key is readable by splitter's group (the pod's fsGroup) and by no other user
    mode = secret["defaultMode"]
    assert mode & 0o040 and not mode & 0o007, oct(mode)
    assert pod.spec["securityContext"]["fsGroup"] == IMAGE_USER
    # the Secret cert-manager makes, when certificate.yaml is applied
    (certificate,) = load_documents(KUSTOMIZE_ROOT / "edge-tls" / "certificate.yaml")
    assert secret["secretName"] == certificate["spec"]["secretName"]


def test_edge_tls_serves_https_on_443_only() -> None:
    objects = render("edge-tls")
    (pod,) = splitter_pods(objects)
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "splitter"]
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"]) == ("https", 443)
    assert pod.port_number(port["targetPort"]) == pod.config.listen.port
    # no port of the pod is left named http, or at the base's plain 8080
    names = {p["name"]: p["containerPort"] for p in pod.container["ports"]}
    assert names == {"https": pod.config.listen.port, "metrics": pod.config.metrics.listen.port}


def test_edge_tls_is_the_edge_with_tls() -> None:
    (pod,) = splitter_pods(render("edge-tls"))
    (edge_pod,) = splitter_pods(render("edge"))
    assert pod.deployment["spec"]["replicas"] == edge_pod.deployment["spec"]["replicas"] == 3
    config, edge_config = dict(pod.raw_config), dict(edge_pod.raw_config)
    del config["tls"], config["listen"], edge_config["listen"]
    assert config == edge_config
    container = {k: v for k, v in pod.container.items() if k not in ("ports", "volumeMounts")}
    edge_container = {
        k: v for k, v in edge_pod.container.items() if k not in ("ports", "volumeMounts")
    }
    assert container == edge_container
    tls_mounts = [m for m in pod.container["volumeMounts"] if m["name"] == "tls"]
    others = [m for m in pod.container["volumeMounts"] if m["name"] != "tls"]
    assert len(tls_mounts) == 1 and others == edge_pod.container["volumeMounts"]


def test_the_cert_manager_certificate_stays_out_of_the_kustomization() -> None:
    """A cert-manager Certificate is a custom resource: the Kubernetes schemas do not
    know it, and a cluster without cert-manager would refuse the whole kustomization. It
    is applied on its own; here it is read for what splitter depends on."""
    (certificate,) = load_documents(KUSTOMIZE_ROOT / "edge-tls" / "certificate.yaml")
    assert (certificate["apiVersion"], certificate["kind"]) == ("cert-manager.io/v1", "Certificate")
    spec = certificate["spec"]
    assert spec["dnsNames"] and spec["issuerRef"]["name"] and spec["issuerRef"]["kind"]
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    for name in KUSTOMIZATIONS:
        assert all(obj["kind"] != "Certificate" for obj in render(name)), name
