"""A small offline Kustomize renderer: exactly the features k8s/ uses, nothing more.

Why it exists: CI must render k8s/overlays/* without kubectl, a kustomize binary or the network,
and no pinned kustomize is installable from PyPI or Debian here (Debian's kubernetes-client is
v1.20 with kustomize v2, which lacks `patches`, `labels` and `replicas`). So this module
re-implements the subset of kustomize v5 that the manifests rely on, following kustomize's own
field specs and ordering, and refuses loudly (KustomizeError) anything it does not implement
rather than silently rendering something different from `kubectl kustomize`.
tests/deploy/test_kustomize.py compares its output with the real kustomize whenever a kustomize v5
(`kustomize` or `kubectl` >= 1.27) happens to be installed.

Supported kustomization fields:
  resources          files (multi-document YAML) and directories holding a kustomization
  namespace          sets metadata.namespace on namespaced objects, renames Namespace objects
  labels             pairs + includeSelectors / includeTemplates (kustomize's field specs)
  commonLabels       = labels with includeSelectors: true
  images             name / newName / newTag / digest on every containers[]/initContainers[]
  replicas           name / count on Deployment, ReplicaSet, ReplicationController, StatefulSet
  patches            strategic merge (inline or path; target optional; `$patch: delete|replace`,
                     null deletes a key; built-in list merge keys: containers by name, env by
                     name, ports by containerPort/port, volumes by name, volumeMounts by
                     mountPath, topologySpreadConstraints by topologyKey, ...; kustomize's
                     element order; lists of custom resources are replaced wholesale) and
                     JSON 6902 (add, remove, replace, move, copy, test)
  configMapGenerator literals / envs / files, behavior create|merge|replace, options
                     (labels, annotations, disableNameSuffixHash); the name hash is
                     kustomize's, and references from pod specs are rewritten to the hashed name
  generatorOptions   labels, annotations, disableNameSuffixHash

Output order is kustomize's default ("legacy") order.

Usage: python -m tests.deploy.kustomize_render k8s/overlays/prod
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "commonLabels",
        "images",
        "replicas",
        "patches",
        "configMapGenerator",
        "generatorOptions",
    }
)

# Kinds that are not namespaced (kustomize leaves their metadata.namespace alone).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ClusterImageCatalog",
    }
)
# Kinds whose namespace-dependent cross references kustomize rewrites and this module does not.
NAMESPACE_REFERENCE_KINDS = frozenset(
    {"RoleBinding", "ClusterRoleBinding", "APIService", "CustomResourceDefinition"}
)

# Groups whose kinds kustomize knows from its built-in OpenAPI document, i.e. where strategic
# merge uses the Kubernetes patch strategies rather than inference.
BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "policy",
        "autoscaling",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "node.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "certificates.k8s.io",
    }
)

# Strategic-merge list merge keys of the built-in API (patchStrategy=merge, patchMergeKey).
# Lists not named here are replaced wholesale by a patch, as the API server does.
_POD_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
BUILTIN_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "ownerReferences": "uid",
    "conditions": "type",
}

# --- field specs, transcribed from kustomize api/internal/konfig/builtinpluginconsts ------------


@dataclass(frozen=True)
class FieldSpec:
    path: str
    create: bool = False
    kind: str | None = None
    group: str | None = None
    version: str | None = None

    def applies_to(self, obj: Obj) -> bool:
        group, version = split_api_version(obj.get("apiVersion", ""))
        if self.kind is not None and obj.get("kind") != self.kind:
            return False
        if self.group is not None and group != self.group:
            return False
        return not (self.version is not None and version != self.version)


_TEMPLATE_LABEL_SPECS = (
    FieldSpec("spec/template/metadata/labels", True, "ReplicationController", version="v1"),
    FieldSpec("spec/template/metadata/labels", True, "Deployment"),
    FieldSpec("spec/template/metadata/labels", True, "ReplicaSet"),
    FieldSpec("spec/template/metadata/labels", True, "DaemonSet"),
    FieldSpec("spec/template/metadata/labels", True, "StatefulSet", group="apps"),
    FieldSpec("spec/template/metadata/labels", True, "Job", group="batch"),
    FieldSpec("spec/jobTemplate/metadata/labels", True, "CronJob", group="batch"),
    FieldSpec("spec/jobTemplate/spec/template/metadata/labels", True, "CronJob", group="batch"),
)
_METADATA_LABEL_SPEC = FieldSpec("metadata/labels", True)
_AFFINITY_PATHS = (
    "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/"
    "podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/"
    "labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/"
    "podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/"
    "labelSelector/matchLabels",
    "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
)
_SELECTOR_LABEL_SPECS = (
    FieldSpec("spec/selector", True, "Service", version="v1"),
    FieldSpec("spec/selector", True, "ReplicationController", version="v1"),
    FieldSpec("spec/selector/matchLabels", True, "Deployment"),
    *(FieldSpec(p, False, "Deployment", group="apps") for p in _AFFINITY_PATHS),
    FieldSpec("spec/selector/matchLabels", True, "ReplicaSet"),
    FieldSpec("spec/selector/matchLabels", True, "DaemonSet"),
    FieldSpec("spec/selector/matchLabels", True, "StatefulSet", group="apps"),
    *(FieldSpec(p, False, "StatefulSet", group="apps") for p in _AFFINITY_PATHS),
    FieldSpec("spec/selector/matchLabels", False, "Job", group="batch"),
    FieldSpec("spec/jobTemplate/spec/selector/matchLabels", False, "CronJob", group="batch"),
    FieldSpec("spec/selector/matchLabels", False, "PodDisruptionBudget", group="policy"),
    FieldSpec("spec/podSelector/matchLabels", False, "NetworkPolicy", group="networking.k8s.io"),
    FieldSpec(
        "spec/ingress/from/podSelector/matchLabels", False, "NetworkPolicy", "networking.k8s.io"
    ),
    FieldSpec(
        "spec/egress/to/podSelector/matchLabels", False, "NetworkPolicy", "networking.k8s.io"
    ),
)
_VOLUME_CLAIM_TEMPLATE_SPEC = FieldSpec(
    "spec/volumeClaimTemplates/metadata/labels", True, "StatefulSet", group="apps"
)
COMMON_LABEL_SPECS = (
    *_SELECTOR_LABEL_SPECS,
    _METADATA_LABEL_SPEC,
    *_TEMPLATE_LABEL_SPECS,
    _VOLUME_CLAIM_TEMPLATE_SPEC,
)
TEMPLATE_LABEL_SPECS = (_METADATA_LABEL_SPEC, *_TEMPLATE_LABEL_SPECS)

_REPLICA_KINDS = frozenset({"Deployment", "ReplicationController", "ReplicaSet", "StatefulSet"})
_WORKLOAD_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

# Keys of the strategic-merge patch language this module does not implement.
_UNSUPPORTED_DIRECTIVE = re.compile(r"^\$(setElementOrder|retainKeys|deleteFromPrimitiveList)")


class KustomizeError(Exception):
    """The kustomization is invalid, or uses a feature this renderer does not implement."""


@dataclass
class Resource:
    obj: Obj
    needs_hash: bool = False  # generated ConfigMap whose name gets kustomize's content hash

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.obj.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace") or "")

    @property
    def group(self) -> str:
        return split_api_version(self.obj.get("apiVersion", ""))[0]

    def ident(self) -> tuple[str, str, str, str]:
        return (self.group, self.kind, self.namespace, self.name)


# --- public API -----------------------------------------------------------------------------


def build(path: str | Path) -> list[Obj]:
    """Render the kustomization at `path` (a directory) like `kustomize build path`."""
    resources = _build_dir(Path(path).resolve(), stack=())
    _add_name_hashes(resources)
    return [r.obj for r in _legacy_sort(resources)]


def dump(objs: list[Obj]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=True, default_flow_style=False, allow_unicode=True)


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


# --- one kustomization ------------------------------------------------------------------------


def _load_kustomization(directory: Path) -> Obj:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if candidate.is_file():
            data = yaml.safe_load(candidate.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise KustomizeError(f"{candidate}: not a mapping")
            unsupported = set(data) - SUPPORTED_FIELDS
            if unsupported:
                raise KustomizeError(
                    f"{candidate}: fields not implemented by this renderer: {sorted(unsupported)}"
                )
            kind = data.get("kind", "Kustomization")
            if kind != "Kustomization":
                raise KustomizeError(f"{candidate}: kind {kind!r} is not supported")
            return data
    raise KustomizeError(f"{directory}: no kustomization file")


def _build_dir(directory: Path, stack: tuple[Path, ...]) -> list[Resource]:
    if directory in stack:
        raise KustomizeError(f"cycle in kustomization resources: {directory}")
    k = _load_kustomization(directory)
    resources: list[Resource] = []
    for entry in k.get("resources") or []:
        if "://" in entry or entry.startswith(("github.com/", "git@")):
            raise KustomizeError(f"{directory}: remote resource {entry!r} (offline renderer)")
        target = (directory / entry).resolve()
        if target.is_dir():
            loaded = _build_dir(target, (*stack, directory))
        elif target.is_file():
            loaded = [Resource(o) for o in _load_objects(target)]
        else:
            raise KustomizeError(f"{directory}: resource {entry!r} not found")
        for res in loaded:
            _append_unique(resources, res, directory)

    _run_config_map_generators(k, directory, resources)
    for patch in k.get("patches") or []:
        _apply_patch_entry(patch, directory, resources)
    if k.get("namespace"):
        _set_namespace(resources, str(k["namespace"]))
    for label in k.get("labels") or []:
        _apply_labels(resources, label)
    if k.get("commonLabels"):
        _apply_labels(resources, {"pairs": k["commonLabels"], "includeSelectors": True})
    for replica in k.get("replicas") or []:
        _apply_replicas(resources, replica)
    for image in k.get("images") or []:
        _apply_image(resources, image)
    return resources


def _load_objects(path: Path) -> list[Obj]:
    objs = []
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document must be an object with apiVersion/kind")
        if doc["kind"].endswith("List") and "items" in doc:
            raise KustomizeError(f"{path}: List objects are not supported")
        objs.append(doc)
    return objs


def _append_unique(resources: list[Resource], res: Resource, where: Path) -> None:
    if any(r.ident() == res.ident() for r in resources):
        raise KustomizeError(f"{where}: duplicate resource {res.ident()}")
    resources.append(res)


# --- configMapGenerator -----------------------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _generator_data(gen: Obj, directory: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for literal in gen.get("literals") or []:
        key, sep, value = str(literal).partition("=")
        if not sep or not key:
            raise KustomizeError(f"configMapGenerator {gen['name']}: bad literal {literal!r}")
        data[key.strip()] = _unquote(value)
    for env_file in gen.get("envs") or []:
        for line in (directory / env_file).read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            key, sep, value = stripped.partition("=")
            if not sep:
                raise KustomizeError(f"{env_file}: line without '=': {line!r}")
            data[key.strip()] = value
    for file_entry in gen.get("files") or []:
        key, sep, rel = str(file_entry).partition("=")
        if not sep:
            key, rel = Path(file_entry).name, file_entry
        data[key] = (directory / rel).read_text(encoding="utf-8")
    return data


def _run_config_map_generators(k: Obj, directory: Path, resources: list[Resource]) -> None:
    global_options = k.get("generatorOptions") or {}
    for gen in k.get("configMapGenerator") or []:
        unknown = set(gen) - {
            "name",
            "namespace",
            "behavior",
            "literals",
            "envs",
            "files",
            "options",
        }
        if unknown:
            raise KustomizeError(f"configMapGenerator fields not implemented: {sorted(unknown)}")
        options = {**global_options, **(gen.get("options") or {})}
        labels = {**(global_options.get("labels") or {}), **(options.get("labels") or {})}
        annotations = {
            **(global_options.get("annotations") or {}),
            **(options.get("annotations") or {}),
        }
        behavior = gen.get("behavior", "create")
        data = _generator_data(gen, directory)
        name = gen["name"]
        namespace = gen.get("namespace") or ""
        existing = [
            r
            for r in resources
            if r.kind == "ConfigMap"
            and r.name == name
            and (not namespace or r.namespace == namespace)
        ]
        if behavior == "create":
            if existing:
                raise KustomizeError(f"configMapGenerator {name}: already exists (use behavior)")
            metadata: Obj = {"name": name}
            if namespace:
                metadata["namespace"] = namespace
            if labels:
                metadata["labels"] = dict(labels)
            if annotations:
                metadata["annotations"] = dict(annotations)
            obj: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
            if data:
                obj["data"] = data
            resources.append(Resource(obj, needs_hash=not options.get("disableNameSuffixHash")))
        elif behavior in ("merge", "replace"):
            if len(existing) != 1:
                raise KustomizeError(
                    f"configMapGenerator {name}: behavior {behavior} needs exactly one existing "
                    f"ConfigMap, found {len(existing)}"
                )
            target = existing[0]
            if behavior == "merge":
                target.obj["data"] = {**(target.obj.get("data") or {}), **data}
            else:
                target.obj["data"] = data
            meta = target.obj["metadata"]
            if labels:
                meta["labels"] = {**(meta.get("labels") or {}), **labels}
            if annotations:
                meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
            if options.get("disableNameSuffixHash"):
                target.needs_hash = False
        else:
            raise KustomizeError(f"configMapGenerator {name}: unknown behavior {behavior!r}")


# --- patches -----------------------------------------------------------------------------------


def _matches_target(res: Resource, target: Obj) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace", "labelSelector"}
    if unknown:
        raise KustomizeError(f"patch target fields not implemented: {sorted(unknown)}")
    group, version = split_api_version(res.obj.get("apiVersion", ""))
    checks = (
        ("group", group),
        ("version", version),
        ("kind", res.kind),
        ("name", res.name),
        ("namespace", res.namespace),
    )
    for key, actual in checks:
        wanted = target.get(key)
        if wanted is not None and wanted != "" and not re.fullmatch(str(wanted), actual):
            return False
    selector = target.get("labelSelector")
    if selector:
        labels = res.obj.get("metadata", {}).get("labels") or {}
        for term in str(selector).split(","):
            key, sep, value = term.strip().partition("=")
            if not sep or "!" in key:
                raise KustomizeError(f"labelSelector {selector!r}: only k=v terms are supported")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _apply_patch_entry(entry: Obj, directory: Path, resources: list[Resource]) -> None:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"patch fields not implemented: {sorted(unknown)}")
    if ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{directory}: a patch needs exactly one of path/patch")
    text = entry["patch"] if "patch" in entry else (directory / entry["path"]).read_text("utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    target = entry.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if not target:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
        matched = [r for r in resources if _matches_target(r, target)]
        if not matched:
            raise KustomizeError(f"{directory}: JSON 6902 patch target matched nothing: {target}")
        for res in matched:
            res.obj = json6902(res.obj, docs[0])
        return
    if not all(isinstance(d, dict) for d in docs):
        raise KustomizeError(f"{directory}: patch is neither JSON 6902 nor strategic merge")
    if len(docs) > 1 and any(d.get("$patch") == "delete" for d in docs):
        # kustomize v5.5 panics on this; keep the manifests renderable by the real tool.
        raise KustomizeError(
            f"{directory}: `$patch: delete` inside a multi-document patch crashes kustomize; "
            "use one patch entry per deletion"
        )
    for doc in docs:
        if target:
            matched = [r for r in resources if _matches_target(r, target)]
        else:
            group, _version = split_api_version(doc.get("apiVersion", ""))
            meta = doc.get("metadata") or {}
            matched = [
                r
                for r in resources
                if r.kind == doc.get("kind")
                and r.group == group
                and r.name == meta.get("name")
                and (not meta.get("namespace") or r.namespace == meta["namespace"])
            ]
            if len(matched) > 1:
                raise KustomizeError(f"{directory}: patch matches several resources: {matched}")
        if not matched:
            raise KustomizeError(f"{directory}: strategic merge patch matched nothing: {doc}")
        for res in matched:
            if doc.get("$patch") == "delete":
                resources.remove(res)
                continue
            patch = copy.deepcopy(doc)
            if target:  # the patch's own identity is ignored when a target selects resources
                patch.pop("kind", None)
                patch.pop("apiVersion", None)
                (patch.get("metadata") or {}).pop("name", None)
            res.obj = strategic_merge(res.obj, patch, builtin=res.group in BUILTIN_GROUPS)


def strategic_merge(base: Obj, patch: Obj, *, builtin: bool) -> Obj:
    """Apply a strategic-merge patch (built-in kinds) or kustomize's inferred merge (others)."""
    return _merge_map(copy.deepcopy(base), patch, builtin, path=())


def _merge_map(base: Obj, patch: Obj, builtin: bool, path: tuple[str, ...]) -> Obj:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive not in (None, "merge"):
        raise KustomizeError(f"$patch: {directive} at {'/'.join(path)} not supported here")
    for key, value in patch.items():
        if key == "$patch":
            continue
        if _UNSUPPORTED_DIRECTIVE.match(key):
            raise KustomizeError(f"strategic merge directive {key} not implemented")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                base.pop(key, None)
            elif isinstance(base.get(key), dict):
                base[key] = _merge_map(base[key], value, builtin, (*path, key))
            else:
                base[key] = _merge_map({}, value, builtin, (*path, key))
        elif isinstance(value, list):
            base[key] = _merge_list(base.get(key), value, builtin, (*path, key))
        else:
            base[key] = copy.deepcopy(value)
    return base


def _list_merge_key(builtin: bool, path: tuple[str, ...]) -> str | None:
    if not builtin:
        # Custom resources: kustomize has no schema for them and replaces lists wholesale.
        return None
    key = path[-1]
    if key == "ports":
        in_container = len(path) >= 2 and path[-2] in _POD_CONTAINER_LISTS
        return "containerPort" if in_container else "port"
    return BUILTIN_MERGE_KEYS.get(key)


def _merge_list(base: Any, patch: list[Any], builtin: bool, path: tuple[str, ...]) -> list[Any]:
    """Merge a list like kustomize (kyaml merge2 in "prepend" mode).

    Elements are matched by merge key; the result lists the patch's elements first, in patch
    order (merged with the base element of the same key where there is one), then the base
    elements the patch did not mention, in base order. `$patch: delete` drops an element.
    """
    base_list = base if isinstance(base, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [
            copy.deepcopy(i)
            for i in patch
            if not (isinstance(i, dict) and i.get("$patch") == "replace")
        ]
    merge_key = _list_merge_key(builtin, path)
    if merge_key is None:
        if any(isinstance(i, dict) and "$patch" in i for i in patch):
            raise KustomizeError(f"$patch inside a non-merging list at {'/'.join(path)}")
        return copy.deepcopy(patch)
    for item in [*base_list, *patch]:
        if not isinstance(item, dict) or merge_key not in item:
            raise KustomizeError(f"list {'/'.join(path)}: element lacks merge key {merge_key}")
    base_by_key = {item[merge_key]: item for item in base_list}
    patch_keys = [item[merge_key] for item in patch]
    result = []
    for item in patch:
        if item.get("$patch") == "delete":
            continue
        existing = base_by_key.get(item[merge_key])
        result.append(_merge_map(existing if existing is not None else {}, item, builtin, path))
    result.extend(item for item in base_list if item[merge_key] not in patch_keys)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, tokens: list[str], op: Obj) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise KustomizeError(f"JSON 6902 {op}: no {token!r}")
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or int(token) >= len(node):
                raise KustomizeError(f"JSON 6902 {op}: bad index {token!r}")
            node = node[int(token)]
        else:
            raise KustomizeError(f"JSON 6902 {op}: cannot descend into a scalar")
    return node


def _json_add(doc: Any, tokens: list[str], value: Any, op: Obj) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], op)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise KustomizeError(f"JSON 6902 {op}: bad index {last!r}")
    else:
        raise KustomizeError(f"JSON 6902 {op}: parent is a scalar")
    return doc


def _json_remove(doc: Any, tokens: list[str], op: Obj) -> Any:
    if not tokens:
        raise KustomizeError(f"JSON 6902 {op}: cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1], op)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise KustomizeError(f"JSON 6902 {op}: nothing to remove at {last!r}")
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise KustomizeError(f"JSON 6902 {op}: nothing to remove at {last!r}")


def json6902(obj: Obj, ops: list[Obj]) -> Obj:
    """Apply RFC 6902 operations to a copy of obj."""
    doc: Any = copy.deepcopy(obj)
    for op in ops:
        kind = op.get("op")
        tokens = _pointer(op.get("path", ""))
        if kind == "add":
            doc = _json_add(doc, tokens, copy.deepcopy(op["value"]), op)
        elif kind == "remove":
            _json_remove(doc, tokens, op)
        elif kind == "replace":
            _resolve(doc, tokens, op)  # must exist
            if tokens:
                _json_remove(doc, tokens, op)
            doc = _json_add(doc, tokens, copy.deepcopy(op["value"]), op)
        elif kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = copy.deepcopy(_resolve(doc, source, op))
            if kind == "move":
                _json_remove(doc, source, op)
            doc = _json_add(doc, tokens, value, op)
        elif kind == "test":
            if _resolve(doc, tokens, op) != op.get("value"):
                raise KustomizeError(f"JSON 6902 test failed: {op}")
        else:
            raise KustomizeError(f"JSON 6902: unknown op {kind!r}")
    if not isinstance(doc, dict):
        raise KustomizeError("JSON 6902 patch turned the object into a non-object")
    return doc


# --- namespace, labels, replicas, images ---------------------------------------------------------


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    for res in resources:
        if res.kind in NAMESPACE_REFERENCE_KINDS:
            raise KustomizeError(f"namespace fix-ups for {res.kind} are not implemented")
        meta = res.obj.setdefault("metadata", {})
        if res.kind == "Namespace":
            meta["name"] = namespace
        elif res.kind not in CLUSTER_SCOPED_KINDS:
            meta["namespace"] = namespace


def _set_labels_at(node: Any, parts: list[str], pairs: dict[str, str], create: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _set_labels_at(item, parts, pairs, create)
        return
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if head not in node or node[head] is None:
        if not create:
            return
        node[head] = {}
    if rest:
        _set_labels_at(node[head], rest, pairs, create)
    elif isinstance(node[head], dict):
        node[head].update(pairs)
    else:
        raise KustomizeError(f"labels: {head} is not a map")


def _apply_labels(resources: list[Resource], label: Obj) -> None:
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown:
        raise KustomizeError(f"labels fields not implemented: {sorted(unknown)}")
    pairs = {str(k): str(v) for k, v in (label.get("pairs") or {}).items()}
    if label.get("includeSelectors"):
        specs: tuple[FieldSpec, ...] = COMMON_LABEL_SPECS
    elif label.get("includeTemplates"):
        specs = TEMPLATE_LABEL_SPECS
    else:
        specs = (_METADATA_LABEL_SPEC,)
    for res in resources:
        for spec in specs:
            if spec.applies_to(res.obj):
                _set_labels_at(res.obj, spec.path.split("/"), pairs, spec.create)


def _apply_replicas(resources: list[Resource], replica: Obj) -> None:
    matched = [r for r in resources if r.kind in _REPLICA_KINDS and r.name == replica["name"]]
    if not matched:
        raise KustomizeError(f"replicas: no workload named {replica['name']!r}")
    for res in matched:
        res.obj.setdefault("spec", {})["replicas"] = int(replica["count"])


def split_image(image: str) -> tuple[str, str, str]:
    """'reg:5000/a/b:tag@sha256:x' -> ('reg:5000/a/b', 'tag', 'sha256:x')."""
    name, _, digest = image.partition("@")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _update_image(value: str, image: Obj) -> str:
    name, tag, digest = split_image(value)
    if image.get("newName"):
        name = image["newName"]
    new_tag, new_digest = str(image.get("newTag") or ""), str(image.get("digest") or "")
    if new_tag and new_digest:
        tag, digest = new_tag, new_digest
    elif new_tag:
        tag, digest = new_tag, ""
    elif new_digest:
        tag, digest = "", new_digest
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _walk_containers(node: Any, image: Obj) -> None:
    # kustomize's legacy image filter: any containers[]/initContainers[] anywhere in the object.
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for container in value:
                    if (
                        isinstance(container, dict)
                        and isinstance(container.get("image"), str)
                        and split_image(container["image"])[0] == image["name"]
                    ):
                        container["image"] = _update_image(container["image"], image)
            _walk_containers(value, image)
    elif isinstance(node, list):
        for item in node:
            _walk_containers(item, image)


def _apply_image(resources: list[Resource], image: Obj) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images fields not implemented: {sorted(unknown)}")
    for res in resources:
        _walk_containers(res.obj, image)


# --- name hashes (kustomize api/hasher) and back references -------------------------------------


def _go_json(value: Any) -> str:
    """json.Marshal as Go does it: sorted keys, compact, HTML-safe escapes, raw UTF-8."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def config_map_hash(obj: Obj) -> str:
    """kustomize's ConfigMap name suffix.

    Note the empty "name": kustomize looks the name up with the single path segment
    "metadata/name", finds nothing and encodes "" — reproduced here because the suffix must be
    byte-identical to kustomize's.
    """
    data = obj.get("data")
    encoded: Obj = {"kind": "ConfigMap", "name": "", "data": data if isinstance(data, dict) else ""}
    if isinstance(obj.get("binaryData"), dict):
        encoded["binaryData"] = obj["binaryData"]
    digest = hashlib.sha256(_go_json(encoded).encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _pod_spec(obj: Obj) -> Obj | None:
    path = _WORKLOAD_POD_SPEC_PATHS.get(str(obj.get("kind")))
    node: Any = obj
    for key in path or ():
        node = node.get(key) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def _rename_config_map_refs(pod_spec: Obj, old: str, new: str) -> None:
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name") == old:
            volume["configMap"]["name"] = new
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name") == old:
                source["configMap"]["name"] = new
    for list_name in ("containers", "initContainers"):
        for container in pod_spec.get(list_name) or []:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
                if ref.get("name") == old:
                    ref["name"] = new
            for env_from in container.get("envFrom") or []:
                ref = env_from.get("configMapRef") or {}
                if ref.get("name") == old:
                    ref["name"] = new


def _add_name_hashes(resources: list[Resource]) -> None:
    for res in resources:
        if not res.needs_hash:
            continue
        old = res.name
        new = f"{old}-{config_map_hash(res.obj)}"
        res.obj["metadata"]["name"] = new
        for other in resources:
            spec = _pod_spec(other.obj)
            if spec is not None and other.namespace == res.namespace:
                _rename_config_map_refs(spec, old, new)


# --- output order (kustomize "legacy" sort) ---------------------------------------------------

_ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
_ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
_TYPE_ORDER = {
    **{kind: i - len(_ORDER_FIRST) for i, kind in enumerate(_ORDER_FIRST)},
    **{kind: i + 1 for i, kind in enumerate(_ORDER_LAST)},
}


def _legacy_sort(resources: list[Resource]) -> list[Resource]:
    """kustomize's legacy order: kind rank, then group_version_kind, then namespace and name."""

    def key(res: Resource) -> tuple[int, str, str, str]:
        group, version = split_api_version(res.obj.get("apiVersion", ""))
        gvk = "_".join((group or "~G", version or "~V", res.kind or "~K"))
        return (_TYPE_ORDER.get(res.kind, 0), gvk, res.namespace or "~X", res.name or "~N")

    return sorted(resources, key=key)


def reference_kustomize() -> list[str] | None:
    """Command of an installed kustomize v5 (`kustomize build` or `kubectl kustomize`), if any.

    Used by the tests to compare this renderer with the real tool; older kustomize versions
    (kubectl before 1.27 embeds v4 or earlier) lack `labels` and are not used.
    """
    candidates: list[tuple[list[str], list[str]]] = []
    if shutil.which("kustomize"):
        candidates.append((["kustomize", "build"], ["kustomize", "version"]))
    if shutil.which("kubectl"):
        candidates.append((["kubectl", "kustomize"], ["kubectl", "version", "--client"]))
    for command, version_command in candidates:
        try:
            out = subprocess.run(
                version_command, capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        match = re.search(r"v(\d+)\.\d+\.\d+", out.split("Kustomize Version:")[-1])
        if match and int(match[1]) >= 5:
            return command
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.deploy.kustomize_render DIR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump(build(argv[1])))
    except KustomizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
