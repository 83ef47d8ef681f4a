"""Render k8s/ (base, overlays/dev, overlays/prod) offline, validate it, and assert its properties.

No kubectl, no cluster, no network: tests/deploy/kustomize_render.py renders the kustomizations.
Schema validation uses the JSON schemas shipped inside the `kubernetes-validate` package (strict
variants: unknown fields fail) for built-in kinds, and tests/deploy/schemas/ for the
CloudNativePG custom resources; those tests skip only when that package is not installed.
When a kubectl or kustomize binary happens to be installed, the renderer's output is also
compared with the real tool's.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize_render as kr

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
TARGETS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
}
OVERLAYS = ("dev", "prod")
NAMESPACES = {"dev": "civic-ledger-dev", "prod": "civic-ledger"}
# Oldest Kubernetes minor we support and a recent one; kubernetes-validate picks the newest
# schema set not newer than each.
K8S_VERSIONS = ("1.30", "1.33")
CNPG_SCHEMA = Path(__file__).with_name("schemas") / "cnpg-v1-subset.schema.json"
CNPG_DEFS = {"Cluster": "cluster", "ScheduledBackup": "scheduledBackup"}
CNPG_API = "postgresql.cnpg.io/v1"

APP_NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
UID = 10001
PLACEHOLDER = re.compile(r"^REPLACE_ME(_[A-Za-z0-9]+)*$")
SECRET_TEMPLATE_KEYS = {
    "civic-secrets": {
        "CIVIC_JWT_SECRET",
        "CIVIC_JWT_PUBLIC_KEY",
        "CIVIC_SIGNING_KEY",
        "CIVIC_PII_MASTER_KEY",
        "CIVIC_METRICS_TOKEN",
    },
    "civic-db-backup-s3": {"ACCESS_KEY_ID", "ACCESS_SECRET_KEY"},
}
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

Obj = dict[str, Any]


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {name: kr.build(path) for name, path in TARGETS.items()}


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_templates(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod template) for every Deployment and Job."""
    for obj in objs:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]


def containers(pod_spec: Obj) -> list[Obj]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def component(objs: list[Obj], name: str) -> tuple[Obj, Obj]:
    """(workload, its single container) of the component api, projector or migrate."""
    for workload, template in pod_templates(objs):
        if template["metadata"]["labels"].get(COMPONENT) == name:
            [container] = template["spec"]["containers"]
            return workload, container
    raise AssertionError(f"no workload for component {name}")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def env_value(container: Obj, name: str) -> Any:
    for env in container.get("env", []):
        if env["name"] == name:
            return env.get("value", env.get("valueFrom"))
    raise AssertionError(f"{container['name']}: no env {name}")


def config_data(objs: list[Obj]) -> dict[str, str]:
    [cm] = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("civic-")]
    return cm["data"]


def quantity(value: Any) -> float:
    """Kubernetes resource quantity -> float (CPU in cores, memory in bytes)."""
    text = str(value)
    units = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, f"bad quantity {value!r}"
    return float(match[1]) * units.get(match[2], 1.0) if match[2] else float(match[1])


def container_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"{container['name']}: no port named {port}")


def all_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from all_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_strings(item)


# --- rendering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_renders_unique_well_formed_objects(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    assert len(objs) >= 15
    ids = [
        (o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in objs
    ]
    assert len(ids) == len(set(ids)), "duplicate objects"
    for obj in objs:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"])
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "civic-ledger"


def test_base_is_namespace_agnostic(rendered: dict[str, list[Obj]]) -> None:
    assert all("namespace" not in o["metadata"] for o in rendered["base"])
    assert not of_kind(rendered["base"], "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_puts_everything_in_its_namespace(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    [namespace] = of_kind(objs, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACES[overlay]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACES[overlay], obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["civic-ledger/environment"] == overlay


@pytest.mark.parametrize("target", TARGETS)
def test_renderer_matches_real_kustomize(rendered: dict[str, list[Obj]], target: str) -> None:
    command = kr.reference_kustomize()
    if command is None:
        pytest.skip("no kustomize v5 (kubectl >= 1.27 or kustomize): cross-check skipped")
    result = subprocess.run(
        [*command, str(TARGETS[target])], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert kr.dump(rendered[target]) == kr.dump(expected)


# --- schema validation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (dev extra) is not installed"
    )


@pytest.fixture(scope="module")
def cnpg_validators() -> dict[str, Any]:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema (pulled in by kubernetes-validate) is not installed"
    )
    schema = json.loads(CNPG_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return {
        kind: jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{definition}"})
        for kind, definition in CNPG_DEFS.items()
    }


def _validation_errors(
    obj: Obj, version: str, kubernetes_validate: Any, cnpg_validators: dict[str, Any]
) -> list[str]:
    if obj["apiVersion"] == CNPG_API:
        validator = cnpg_validators.get(obj["kind"])
        assert validator is not None, f"no schema for CloudNativePG kind {obj['kind']}"
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{list(exc.path)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"no schema: {exc.message}"]
    return []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_objects_match_schemas(
    rendered: dict[str, list[Obj]],
    target: str,
    version: str,
    kubernetes_validate: Any,
    cnpg_validators: dict[str, Any],
) -> None:
    failures = {}
    for obj in rendered[target]:
        errors = _validation_errors(obj, version, kubernetes_validate, cnpg_validators)
        if errors:
            failures[f"{obj['kind']}/{obj['metadata']['name']}"] = errors
    assert not failures, json.dumps(failures, indent=2, ensure_ascii=False)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        # a misspelt field (strict schemas reject unknown properties)
        (
            "Deployment",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                readOnlyRootFileSystem=True
            ),
        ),
        # a wrong type
        ("Deployment", lambda o: o["spec"].update(replicas="three")),
        ("Service", lambda o: o["spec"]["ports"][0].update(port="eighty")),
        # CloudNativePG: unknown method, YAML boolean where PostgreSQL wants a string, typo
        ("Cluster", lambda o: o["spec"]["postgresql"]["synchronous"].update(method="quorum")),
        ("Cluster", lambda o: o["spec"]["postgresql"]["parameters"].update(wal_compression=True)),
        ("Cluster", lambda o: o["spec"].update(instance=3)),
        ("ScheduledBackup", lambda o: o["spec"].update(schedule="0 2 * * *")),
    ],
)
def test_validation_is_not_vacuous(
    rendered: dict[str, list[Obj]],
    kind: str,
    mutate: Any,
    kubernetes_validate: Any,
    cnpg_validators: dict[str, Any],
) -> None:
    broken = copy.deepcopy(of_kind(rendered["prod"], kind)[0])
    mutate(broken)
    assert _validation_errors(broken, K8S_VERSIONS[0], kubernetes_validate, cnpg_validators)


# --- security -----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_hardened(rendered: dict[str, list[Obj]], target: str) -> None:
    templates = list(pod_templates(rendered[target]))
    assert {t["metadata"]["labels"][COMPONENT] for _, t in templates} == {
        "api",
        "projector",
        "migrate",
    }
    for workload, template in templates:
        spec = template["spec"]
        where = workload["metadata"]["name"]
        assert spec["serviceAccountName"] == "civic-ledger", where
        assert spec["automountServiceAccountToken"] is False, where
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, where
        assert pod_sc["runAsUser"] == UID and pod_sc["runAsGroup"] == UID, where
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in containers(spec):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged") is not True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert sc.get("runAsUser", UID) >= 1000, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be an emptyDir"


@pytest.mark.parametrize("target", TARGETS)
def test_resources_requested_and_limited(rendered: dict[str, list[Obj]], target: str) -> None:
    for workload, template in pod_templates(rendered[target]):
        for container in containers(template["spec"]):
            res = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = res["requests"][kind], res["limits"][kind]
                assert 0 < quantity(request) <= quantity(limit), (
                    f"{workload['metadata']['name']}: {kind} {request} > {limit}"
                )


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_hold_placeholders_only(rendered: dict[str, list[Obj]], target: str) -> None:
    for secret in of_kind(rendered[target], "Secret"):
        name = secret["metadata"]["name"]
        assert "data" not in secret, f"{name}: base64 `data` could hide a real value"
        assert secret["stringData"], name
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER.fullmatch(value), f"{name}/{key} does not look like a placeholder"
    # and nothing anywhere (ConfigMaps, annotations, env values) carries key material
    for obj in rendered[target]:
        for text in all_strings(obj):
            assert "-----BEGIN" not in text and "PRIVATE KEY" not in text, obj["metadata"]
            for blob in re.findall(r"[A-Za-z0-9+/]{40,}={0,2}", text):
                # image digests are hex; anything else this long looks like key material
                assert re.fullmatch(r"[0-9a-f]+", blob), f"base64-looking value in {text!r}"


def test_base_secret_templates_document_every_key(rendered: dict[str, list[Obj]]) -> None:
    secrets = {s["metadata"]["name"]: s for s in of_kind(rendered["base"], "Secret")}
    assert set(secrets) == set(SECRET_TEMPLATE_KEYS)
    for name, keys in SECRET_TEMPLATE_KEYS.items():
        assert set(secrets[name]["stringData"]) == keys
        assert secrets[name]["metadata"]["annotations"]["civic-ledger/template"] == "true"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_never_apply_secrets(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """`kubectl apply -k` must not overwrite the real, out-of-band Secrets with templates."""
    objs = rendered[overlay]
    assert not of_kind(objs, "Secret")
    referenced = set()
    for _, template in pod_templates(objs):
        for container in containers(template["spec"]):
            referenced |= {
                e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e
            }
            referenced |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in container.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
    for cluster in of_kind(objs, "Cluster"):
        store = cluster["spec"].get("backup", {}).get("barmanObjectStore")
        if store:
            referenced |= {ref["name"] for ref in store["s3Credentials"].values()}
    cluster_app_secrets = {f"{c['metadata']['name']}-app" for c in of_kind(objs, "Cluster")}
    assert referenced <= set(SECRET_TEMPLATE_KEYS) | cluster_app_secrets, referenced


# --- workloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_commands_and_probes(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    api, api_c = component(objs, "api")
    projector, proj_c = component(objs, "projector")
    job, job_c = component(objs, "migrate")
    assert (api["kind"], projector["kind"], job["kind"]) == ("Deployment", "Deployment", "Job")
    assert api_c["args"][0] == "serve" and "--no-projector" in api_c["args"]
    assert env_value(api_c, "CIVIC_RUN_PROJECTOR") == "0"
    assert proj_c["args"] == ["project", "--port", "9000"]
    assert env_value(proj_c, "CIVIC_RUN_PROJECTOR") == "1"
    assert job_c["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 3
    assert api_c["image"] == proj_c["image"] == job_c["image"], "one image for every process"

    for container, port in ((api_c, 8000), (proj_c, 9000)):
        for probe, path in (
            ("startupProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
            ("livenessProbe", "/health/live"),
        ):
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{container['name']} {probe}"
            assert container_port(container, http["port"]) == port, f"{container['name']} {probe}"
        assert env_value(container, "PORT") == str(port)
    assert "livenessProbe" not in job_c and "readinessProbe" not in job_c


@pytest.mark.parametrize("target", TARGETS)
def test_configuration_wiring(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    config_maps = {c["metadata"]["name"] for c in of_kind(objs, "ConfigMap")}
    [cluster] = of_kind(objs, "Cluster")
    for name in ("api", "projector", "migrate"):
        _, container = component(objs, name)
        refs = container["envFrom"]
        assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} <= config_maps
        assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {"civic-secrets"}
        assert env_value(container, "DATABASE_URL") == {
            "secretKeyRef": {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
        }
    data = config_data(objs)
    assert data["HOST"] == "0.0.0.0"
    assert data["CIVIC_DATA_DIR"].startswith("/tmp/")
    assert all(isinstance(v, str) for v in data.values())
    assert re.fullmatch(r"civic-config-[a-z0-9]{10}", next(iter(config_maps)))


def test_environment_specific_configuration(rendered: dict[str, list[Obj]]) -> None:
    prod, dev = config_data(rendered["prod"]), config_data(rendered["dev"])
    assert prod["CIVIC_ENV"] == "production" and prod["CIVIC_MIGRATE_ON_START"] == "0"
    assert prod["CIVIC_JWT_ALGORITHMS"] in ("RS256", "ES256")
    assert dev["CIVIC_ENV"] == "development"
    assert int(prod["CIVIC_DB_POOL_MIN"]) <= int(prod["CIVIC_DB_POOL_MAX"])


@pytest.mark.parametrize("target", TARGETS)
def test_api_spreads_across_zones_and_nodes(rendered: dict[str, list[Obj]], target: str) -> None:
    api, _ = component(rendered[target], "api")
    template = api["spec"]["template"]
    constraints = template["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    for constraint in constraints:
        assert selects(constraint["labelSelector"]["matchLabels"], template["metadata"]["labels"])
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("target", TARGETS)
def test_selectors_and_references_resolve(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    deployments = {d["metadata"]["name"]: d for d in of_kind(objs, "Deployment")}
    for deployment in deployments.values():
        assert selects(
            deployment["spec"]["selector"]["matchLabels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        )
    [service] = of_kind(objs, "Service")
    api, api_c = component(objs, "api")
    assert selects(service["spec"]["selector"], api["spec"]["template"]["metadata"]["labels"])
    assert not selects(
        service["spec"]["selector"],
        component(objs, "projector")[0]["spec"]["template"]["metadata"]["labels"],
    )
    for port in service["spec"]["ports"]:
        assert container_port(api_c, port["targetPort"]) == 8000
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        matched = [
            d
            for d in deployments.values()
            if selects(
                pdb["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(matched) == 1, pdb["metadata"]["name"]
    [cluster] = of_kind(objs, "Cluster")
    for backup in of_kind(objs, "ScheduledBackup"):
        assert backup["spec"]["cluster"]["name"] == cluster["metadata"]["name"]


# --- network policies -----------------------------------------------------------------------------


def _policies_for(objs: list[Obj], labels: dict[str, str], direction: str) -> list[Obj]:
    return [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if direction in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
    ]


def _peers(policies: list[Obj], direction: str) -> list[tuple[Obj, list[Obj]]]:
    key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return [
        (peer, rule.get("ports", []))
        for p in policies
        for rule in p["spec"].get(key, [])
        for peer in rule.get(peer_key, [{}])
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    [cluster] = of_kind(objs, "Cluster")
    db_labels = {"cnpg.io/cluster": cluster["metadata"]["name"]}
    ns = "kubernetes.io/metadata.name"

    # every application pod is covered in both directions (so anything unlisted is denied)
    for _, template in pod_templates(objs):
        labels = template["metadata"]["labels"]
        assert _policies_for(objs, labels, "Ingress"), labels
        assert _policies_for(objs, labels, "Egress"), labels

    api_labels = component(objs, "api")[0]["spec"]["template"]["metadata"]["labels"]
    api_in = _peers(_policies_for(objs, api_labels, "Ingress"), "Ingress")
    assert api_in and all(set(peer) == {"namespaceSelector"} for peer, _ in api_in)
    sources = {peer["namespaceSelector"]["matchLabels"][ns] for peer, _ in api_in}
    assert sources == {"ingress-nginx", "monitoring"}
    assert all(p["port"] == "http" for _, ports in api_in for p in ports)

    proj_labels = component(objs, "projector")[0]["spec"]["template"]["metadata"]["labels"]
    proj_in = _peers(_policies_for(objs, proj_labels, "Ingress"), "Ingress")
    assert {peer["namespaceSelector"]["matchLabels"][ns] for peer, _ in proj_in} == {"monitoring"}
    assert [p["port"] for _, ports in proj_in for p in ports] == ["metrics"]

    migrate_labels = component(objs, "migrate")[0]["spec"]["template"]["metadata"]["labels"]
    assert _peers(_policies_for(objs, migrate_labels, "Ingress"), "Ingress") == []

    # egress: the database pods on 5432 and DNS; the projector may also reach public HTTPS
    for labels in (api_labels, proj_labels, migrate_labels):
        for peer, ports in _peers(_policies_for(objs, labels, "Egress"), "Egress"):
            port_numbers = {p["port"] for p in ports}
            if peer.get("podSelector", {}).get("matchLabels") == db_labels:
                assert port_numbers == {5432} and "namespaceSelector" not in peer
            elif peer.get("namespaceSelector", {}).get("matchLabels") == {ns: "kube-system"}:
                assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                assert port_numbers == {53}
            else:
                assert labels is proj_labels, f"unexpected egress {peer} for {labels}"
                assert port_numbers == {443}
                block = peer["ipBlock"]
                assert block["cidr"] == "0.0.0.0/0"
                assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
                    block["except"]
                )

    # the database accepts the application, its own instances, the operator and Prometheus only
    db_policies = [
        p
        for p in of_kind(objs, "NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels") == db_labels
    ]
    assert db_policies and all(p["spec"]["policyTypes"] == ["Ingress"] for p in db_policies)
    for peer, ports in _peers(db_policies, "Ingress"):
        port_numbers = {p["port"] for p in ports}
        if "namespaceSelector" in peer:
            assert peer["namespaceSelector"]["matchLabels"][ns] in ("cnpg-system", "monitoring")
        elif peer["podSelector"]["matchLabels"] == db_labels:
            assert port_numbers == {5432, 8000}
        else:
            assert peer["podSelector"]["matchLabels"] == {APP_NAME: "civic-ledger"}
            assert port_numbers == {5432}


# --- environments ---------------------------------------------------------------------------------


def test_prod_scale_and_availability(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["prod"]
    api, api_c = component(objs, "api")
    projector, _ = component(objs, "projector")
    assert api["spec"]["replicas"] >= 3
    assert projector["spec"]["replicas"] >= 2
    hpa = one(objs, "HorizontalPodAutoscaler", "civic-api")
    assert (
        hpa["spec"]["minReplicas"] >= 3 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    metric = hpa["spec"]["metrics"][0]["resource"]
    assert metric["name"] == "cpu" and metric["target"]["type"] == "Utilization"
    pdb = one(objs, "PodDisruptionBudget", "civic-api")
    assert "maxUnavailable" not in pdb["spec"]
    assert 2 <= pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    hostname = [
        c
        for c in api["spec"]["template"]["spec"]["topologySpreadConstraints"]
        if c["topologyKey"] == "kubernetes.io/hostname"
    ]
    assert hostname[0]["whenUnsatisfiable"] == "DoNotSchedule"
    # resources bumped over base
    base_api_c = component(rendered["base"], "api")[1]
    assert quantity(api_c["resources"]["limits"]["memory"]) > quantity(
        base_api_c["resources"]["limits"]["memory"]
    )


def test_prod_image_is_pinned(rendered: dict[str, list[Obj]]) -> None:
    for _, template in pod_templates(rendered["prod"]):
        for container in containers(template["spec"]):
            name, tag, digest = kr.split_image(container["image"])
            assert "/" in name and "." in name.split("/")[0], f"registry-qualified: {name}"
            assert digest or (tag and tag != "latest"), container["image"]
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_prod_postgres_is_highly_available(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["prod"]
    [cluster] = of_kind(objs, "Cluster")
    spec = cluster["spec"]
    assert cluster["apiVersion"] == CNPG_API
    assert spec["instances"] == 3
    sync = spec["postgresql"].get("synchronous")
    if sync is not None:
        assert sync["method"] in ("any", "first") and 1 <= sync["number"] < spec["instances"]
        assert sync.get("dataDurability", "required") == "required"
    else:
        assert 1 <= spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"]
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    assert spec.get("enablePDB", True) is True
    assert re.fullmatch(r"\S+:\d+\.\d+\S*", spec["imageName"]), "pin the PostgreSQL version"
    assert spec["enableSuperuserAccess"] is False
    assert quantity(spec["storage"]["size"]) >= quantity("500Gi")

    initdb = spec["bootstrap"]["initdb"]
    assert (initdb["database"], initdb["owner"]) == ("civic", "civic")
    assert initdb["dataChecksums"] is True
    sql = " ".join(initdb["postInitApplicationSQL"])
    assert "CREATE ROLE civic_app NOLOGIN" in sql and "NOBYPASSRLS" in sql
    assert f"GRANT civic_app TO {initdb['owner']}" in sql
    [role] = [r for r in spec["managed"]["roles"] if r["name"] == "civic_app"]
    assert role["login"] is False and role["bypassrls"] is False and role["superuser"] is False

    store = spec["backup"]["barmanObjectStore"]
    assert re.match(r"^(s3|gs|https)://", store["destinationPath"])
    assert store["wal"]["compression"] and spec["backup"]["retentionPolicy"]
    [backup] = of_kind(objs, "ScheduledBackup")
    assert backup["spec"]["method"] == "barmanObjectStore"


@pytest.mark.parametrize("target", TARGETS)
def test_synchronous_replication_never_outnumbers_standbys(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    # with dataDurability: required a quorum larger than the standbys blocks every commit
    for cluster in of_kind(rendered[target], "Cluster"):
        spec = cluster["spec"]
        sync = spec["postgresql"].get("synchronous")
        if sync:
            assert sync["number"] <= spec["instances"] - 1, target


def test_dev_is_small(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["dev"]
    assert component(objs, "api")[0]["spec"]["replicas"] == 1
    assert component(objs, "projector")[0]["spec"]["replicas"] == 1
    [cluster] = of_kind(objs, "Cluster")
    assert cluster["spec"]["instances"] == 1
    assert "synchronous" not in cluster["spec"]["postgresql"]
    assert "backup" not in cluster["spec"] and not of_kind(objs, "ScheduledBackup")
    hpa = one(objs, "HorizontalPodAutoscaler", "civic-api")
    assert hpa["spec"]["minReplicas"] == 1
    for _, template in pod_templates(objs):
        for container in containers(template["spec"]):
            assert quantity(container["resources"]["requests"]["memory"]) <= quantity("256Mi")
            assert container["image"] == "civic-ledger:dev"


# --- documentation ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_is_documented(rendered: dict[str, list[Obj]], target: str) -> None:
    table = {
        m
        for m in re.findall(
            r"^\| `([A-Z][A-Z0-9_]+)` \|", OPERATIONS_DOC.read_text(encoding="utf-8"), flags=re.M
        )
    }
    names: set[str] = set()
    for cm in of_kind(rendered[target], "ConfigMap"):
        names |= set(cm.get("data", {}))
    for _, template in pod_templates(rendered[target]):
        for container in containers(template["spec"]):
            names |= {e["name"] for e in container.get("env", [])}
    names |= SECRET_TEMPLATE_KEYS["civic-secrets"]
    assert names <= table, f"undocumented in docs/operations.md: {sorted(names - table)}"
