"""The offline Kustomize renderer, on a fixture that exercises every feature it implements.

The expected values were taken from `kubectl kustomize` (kustomize v5.5.0) on the same fixture;
when a kubectl or kustomize binary is installed, the comparison is also made live.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import kustomize_render as kr

Obj = dict[str, Any]

BASE_KUSTOMIZATION = """
resources: [app.yaml, cr.yaml]
commonLabels:
  team: civic
configMapGenerator:
  - name: cfg
    envs: [cfg.env]
    files: [note.txt, renamed=note.txt]
generatorOptions:
  labels: {gen: "yes"}
"""

BASE_APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway,
           labelSelector: {matchLabels: {app: web}}}
      volumes: [{name: c, configMap: {name: cfg}}, {name: t, emptyDir: {}}]
      initContainers: [{name: init, image: "busybox:1.36"}]
      containers:
        - name: web
          image: "registry:5000/org/web:1.0@sha256:abc"
          args: [a, b]
          env: [{name: X, value: "1"}, {name: Y, valueFrom: {configMapKeyRef: {name: cfg, key: A}}}]
          ports: [{containerPort: 80, name: http}]
          volumeMounts: [{name: c, mountPath: /c}]
        - name: side
          image: busybox
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {x: y}}}]}]
"""

BASE_CR = """
apiVersion: example.org/v1
kind: Thing
metadata: {name: t1}
spec:
  items: [{name: a, v: 1}, {name: b, v: 2}]
  plain: [1, 2, 3]
  nested: {keep: 1, drop: 2}
"""

OVERLAY_KUSTOMIZATION = """
namespace: ov-ns
resources: [../base, ns.yaml]
labels:
  - pairs: {env: ov}
images:
  - {name: "registry:5000/org/web", newTag: "2.0"}
  - {name: busybox, newName: mirror/busybox, digest: "sha256:def"}
replicas: [{name: web, count: 4}]
configMapGenerator:
  - name: cfg
    behavior: merge
    literals: ["B=\\"quoted\\"", C=3]
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec:
        template:
          spec:
            containers:
              - name: web
                args: [c]
                env: [{name: Z, value: "z"}, {name: X, $patch: delete}]
                ports: [{containerPort: 9090, name: metrics}]
              - name: side
                $patch: delete
              - name: new
                image: busybox:1
            topologySpreadConstraints:
              - {topologyKey: host, maxSkew: 2, whenUnsatisfiable: DoNotSchedule}
  - patch: |-
      apiVersion: example.org/v1
      kind: Thing
      metadata: {name: t1}
      spec:
        items: [{name: b, v: 20}, {name: c, v: 3}]
        plain: [9]
        nested: {drop: null, add: 3}
  - target: {kind: Service, name: "w.*"}
    patch: |-
      - {op: add, path: /spec/ports/-, value: {port: 443, name: https, targetPort: 8443}}
      - {op: copy, from: /spec/ports/0/port, path: /spec/ports/1/port}
      - {op: test, path: /spec/ports/0/port, value: 80}
  - target: {kind: NetworkPolicy}
    patch: |-
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata: {name: ignored}
      spec:
        ingress: [{from: [{namespaceSelector: {matchLabels: {a: b}}}]}]
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


@pytest.fixture
def fixture_dir(tmp_path: Path) -> Path:
    write(tmp_path / "base" / "kustomization.yaml", BASE_KUSTOMIZATION)
    write(tmp_path / "base" / "app.yaml", BASE_APP)
    write(tmp_path / "base" / "cr.yaml", BASE_CR)
    write(tmp_path / "base" / "cfg.env", "A=1\n# comment\nB=two words\n")
    write(tmp_path / "base" / "note.txt", "hello <b>&\n")
    write(tmp_path / "ov" / "kustomization.yaml", OVERLAY_KUSTOMIZATION)
    write(tmp_path / "ov" / "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    return tmp_path / "ov"


def by_kind(objs: list[Obj]) -> dict[str, Obj]:
    return {o["kind"]: o for o in objs}


def test_output_order_is_kustomize_legacy_order(fixture_dir: Path) -> None:
    kinds = [o["kind"] for o in kr.build(fixture_dir)]
    assert kinds == ["Namespace", "ConfigMap", "Service", "Deployment", "Thing", "NetworkPolicy"]


def test_namespace_and_labels(fixture_dir: Path) -> None:
    objs = by_kind(kr.build(fixture_dir))
    assert objs["Namespace"]["metadata"] == {"name": "ov-ns", "labels": {"env": "ov"}}
    for kind in ("ConfigMap", "Service", "Deployment", "Thing", "NetworkPolicy"):
        assert objs[kind]["metadata"]["namespace"] == "ov-ns"
        assert objs[kind]["metadata"]["labels"]["env"] == "ov"
    deployment = objs["Deployment"]["spec"]
    # commonLabels reach selectors and templates; plain `labels` only metadata
    assert deployment["selector"]["matchLabels"] == {"app": "web", "team": "civic"}
    assert deployment["template"]["metadata"]["labels"] == {"app": "web", "team": "civic"}
    assert objs["Service"]["spec"]["selector"] == {"app": "web", "team": "civic"}
    assert objs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]["team"] == "civic"
    zone = [
        c
        for c in deployment["template"]["spec"]["topologySpreadConstraints"]
        if c["topologyKey"] == "zone"
    ]
    assert zone[0]["labelSelector"]["matchLabels"] == {"app": "web", "team": "civic"}


def test_config_map_generator_merge_and_hash(fixture_dir: Path) -> None:
    objs = by_kind(kr.build(fixture_dir))
    cm = objs["ConfigMap"]
    assert cm["metadata"]["name"] == "cfg-t22hggt44b"  # kustomize v5.5.0's suffix
    assert cm["metadata"]["labels"] == {"gen": "yes", "team": "civic", "env": "ov"}
    assert cm["data"] == {
        "A": "1",
        "B": "quoted",
        "C": "3",
        "note.txt": "hello <b>&\n",
        "renamed": "hello <b>&\n",
    }
    spec = objs["Deployment"]["spec"]["template"]["spec"]
    assert spec["volumes"][0]["configMap"]["name"] == "cfg-t22hggt44b"
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["Y"]["valueFrom"]["configMapKeyRef"]["name"] == "cfg-t22hggt44b"


@pytest.mark.parametrize(
    ("data", "expected"),
    [({"A": "1"}, "89g4tffbfk"), ({"A": "1", "B": "<x>&é"}, "585b9h92b4")],
)
def test_config_map_hash_is_kustomizes(data: dict[str, str], expected: str) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "any"}, "data": data}
    assert kr.config_map_hash(obj) == expected


def test_strategic_merge_of_builtin_lists(fixture_dir: Path) -> None:
    spec = by_kind(kr.build(fixture_dir))["Deployment"]["spec"]
    assert spec["replicas"] == 4
    pod = spec["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["web", "new"]
    web = pod["containers"][0]
    assert web["args"] == ["c"]  # no merge key: replaced
    assert [e["name"] for e in web["env"]] == ["Z", "Y"]  # patch items first, X deleted
    assert [p["containerPort"] for p in web["ports"]] == [9090, 80]
    assert web["volumeMounts"] == [{"name": "c", "mountPath": "/c"}]
    assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == ["host", "zone"]


def test_images(fixture_dir: Path) -> None:
    pod = by_kind(kr.build(fixture_dir))["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry:5000/org/web:2.0"
    assert pod["containers"][1]["image"] == "mirror/busybox@sha256:def"
    assert pod["initContainers"][0]["image"] == "mirror/busybox@sha256:def"
    assert kr.split_image("reg:5000/a/b:t@sha256:x") == ("reg:5000/a/b", "t", "sha256:x")
    assert kr.split_image("reg:5000/a/b") == ("reg:5000/a/b", "", "")


def test_custom_resources_merge_maps_and_replace_lists(fixture_dir: Path) -> None:
    spec = by_kind(kr.build(fixture_dir))["Thing"]["spec"]
    assert spec == {
        "items": [{"name": "b", "v": 20}, {"name": "c", "v": 3}],
        "plain": [9],
        "nested": {"keep": 1, "add": 3},
    }


def test_json6902_and_targeted_strategic_merge(fixture_dir: Path) -> None:
    objs = by_kind(kr.build(fixture_dir))
    assert objs["Service"]["spec"]["ports"] == [
        {"port": 80, "targetPort": "http"},
        {"port": 80, "name": "https", "targetPort": 8443},
    ]
    # the targeted patch's own name ("ignored") is not applied
    assert objs["NetworkPolicy"]["metadata"]["name"] == "np"
    assert objs["NetworkPolicy"]["spec"]["ingress"] == [
        {"from": [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]}
    ]


def test_json6902_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "move", "from": "/c", "path": "/d~1e"},
        {"op": "remove", "path": "/a/b/2"},
        {"op": "test", "path": "/a/b", "value": [0, 1]},
    ]
    assert kr.json6902(doc, ops) == {"a": {"b": [0, 1]}, "d/e": "y"}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}, "input untouched"
    with pytest.raises(kr.KustomizeError):
        kr.json6902(doc, [{"op": "replace", "path": "/missing", "value": 1}])
    with pytest.raises(kr.KustomizeError):
        kr.json6902(doc, [{"op": "test", "path": "/c", "value": "nope"}])


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ("resources: [a.yaml]\nnamePrefix: x-\n", "not implemented"),
        ("resources: [https://example.org/x]\n", "remote"),
        ("resources: [missing.yaml]\n", "not found"),
        ("resources: [a.yaml]\nreplicas: [{name: nope, count: 2}]\n", "no workload"),
        (
            "resources: [a.yaml]\npatches:\n  - patch: |-\n"
            "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: other}\n",
            "matched nothing",
        ),
        (
            "resources: [a.yaml, b.yaml]\npatches:\n  - patch: |-\n"
            "      $patch: delete\n      apiVersion: v1\n      kind: ConfigMap\n"
            "      metadata: {name: a}\n      ---\n      $patch: delete\n"
            "      apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: b}\n",
            "crashes kustomize",
        ),
    ],
)
def test_unsupported_or_invalid_input_fails_loudly(
    tmp_path: Path, kustomization: str, message: str
) -> None:
    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    write(tmp_path / "b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    write(tmp_path / "kustomization.yaml", kustomization)
    with pytest.raises(kr.KustomizeError, match=message):
        kr.build(tmp_path)


def test_delete_patch_removes_resource(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    write(
        tmp_path / "kustomization.yaml",
        "resources: [a.yaml]\npatches:\n  - patch: |-\n"
        "      $patch: delete\n      apiVersion: v1\n      kind: Secret\n"
        "      metadata: {name: s}\n",
    )
    assert [o["kind"] for o in kr.build(tmp_path)] == ["ConfigMap"]


def test_cli_prints_yaml(fixture_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kr.main(["kustomize_render", str(fixture_dir)]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(docs) == 6
    assert kr.main(["kustomize_render", str(fixture_dir / "nowhere")]) == 1


def test_fixture_matches_real_kustomize(fixture_dir: Path) -> None:
    command = kr.reference_kustomize()
    if command is None:
        pytest.skip("no kustomize v5 (kubectl >= 1.27 or kustomize): cross-check skipped")
    result = subprocess.run(
        [*command, str(fixture_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert kr.dump(kr.build(fixture_dir)) == kr.dump(expected)
