"""The manifests in cluster/: they parse, match the KubeRay and Ray autoscaler schemas, name
the project's images and entry points, run with token authentication from a Secret, keep
data and checkpoints on S3, and hold no credentials."""

from __future__ import annotations

import ast
import copy
import os
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from cluster_files import (AWS_CONFIG, KUBE_MANIFESTS, REPO, aws_config, built_images, containers, gpus,
                           kube_docs, kuberay_schema, pod_templates, ray_cluster_specs, ray_version)

SECRET, SECRET_KEY = "dpr-ray-auth", "auth_token"
CLUSTER_SPECS = list(ray_cluster_specs())
CHECKED_FILES = sorted([*(REPO / "cluster").rglob("*"), *(REPO / "docker").rglob("*"),
                        REPO / ".dockerignore", REPO / "docs" / "cluster.md"])


def _errors(doc, schema=None) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema or kuberay_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _image_variant(image: str) -> str:
    assert image in built_images(), f"image {image!r} is not one that docker/README.md builds: {sorted(built_images())}"
    return image.rsplit("-", 1)[1]


def _rayjob() -> dict:
    return next(d for d in kube_docs().values() if d["kind"] == "RayJob")


def _serve_config() -> dict:
    return yaml.safe_load(next(d for d in kube_docs().values() if d["kind"] == "RayService")["spec"]["serveConfigV2"])


def _entrypoint_overrides() -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(_rayjob()["spec"]["entrypoint"])
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    return argv, dict(s.split("=", 1) for s in sets)


# ----------------------------------------------------------------------------- parsing, schemas
def test_cluster_directory_holds_exactly_the_checked_manifests():
    found = {p.name for p in (REPO / "cluster").iterdir() if p.is_file()}
    assert found == {*KUBE_MANIFESTS, AWS_CONFIG.name}, "every file in cluster/ must be covered by these tests"
    for path in (REPO / "cluster").iterdir():
        assert list(yaml.safe_load_all(path.read_text())), f"{path.name} is empty"


@pytest.mark.parametrize("name", KUBE_MANIFESTS)
def test_kuberay_manifest_matches_schema(name):
    doc = kube_docs()[name]
    assert not _errors(doc), f"cluster/{name}:\n" + "\n".join(_errors(doc))
    if doc["kind"] != "ServiceAccount":
        assert doc["apiVersion"] == "ray.io/v1"


@pytest.mark.parametrize("breakage", [
    ("typo in a spec key", lambda d: d["spec"].update(enableIntreeAutoscaling=True)),
    ("worker group without groupName", lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName")),
    ("env var with both value and valueFrom", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]
     ["containers"][0]["env"][1].update(value="x")),
    ("secretKeyRef without key", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
     ["env"][1]["valueFrom"]["secretKeyRef"].pop("key")),
    ("container without image", lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
     .pop("image")),
    ("old API version", lambda d: d.update(apiVersion="ray.io/v1alpha1")),
    ("unknown auth mode", lambda d: d["spec"]["authOptions"].update(mode="password")),
])
def test_schema_rejects_broken_clusters(breakage):
    """The schema is not vacuous: each of these breaks a valid manifest."""
    _, breaks = breakage
    doc = copy.deepcopy(kube_docs()["raycluster.yaml"])
    breaks(doc)
    assert _errors(doc)


def test_schema_rejects_rayjob_with_two_cluster_sources_and_structured_serve_config():
    job = copy.deepcopy(_rayjob())
    job["spec"]["clusterSelector"] = {"ray.io/cluster": "dpr-dist"}
    assert _errors(job)
    svc = copy.deepcopy(next(d for d in kube_docs().values() if d["kind"] == "RayService"))
    svc["spec"]["serveConfigV2"] = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert _errors(svc), "serveConfigV2 must be a string (KubeRay parses it)"


# ----------------------------------------------------------------------------- serving
def test_serve_config_is_yaml_with_the_app_import_path():
    config = _serve_config()
    schema = kuberay_schema()
    assert not _errors(config, {"$defs": schema["$defs"], **schema["$defs"]["serveConfig"]})
    (app,) = config["applications"]
    assert app["import_path"] == "dpr_dist.serve.app:build_app"
    model_dir = app["args"]["model_dir"]
    assert model_dir.startswith("s3://") and model_dir.rstrip("/").endswith("/best"), model_dir


def test_serve_import_path_resolves_to_a_builder():
    module, attr = _serve_config()["applications"][0]["import_path"].split(":")
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.is_file():
        pytest.skip(f"{path.relative_to(REPO)} is not written yet (the serving module lands separately)")
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert attr in names, f"{path.relative_to(REPO)} defines no {attr}"


# ----------------------------------------------------------------------------- the training job
def test_rayjob_runs_the_train_job_with_valid_overrides():
    from dpr_dist.config import load_config

    argv, overrides = _entrypoint_overrides()
    assert argv[:2] == ["python", "jobs/train_ag.py"], argv[:2]
    assert (REPO / argv[1]).is_file(), f"{argv[1]} does not exist"
    config = argv[argv.index("--config") + 1]
    assert config == "configs/paper.yaml"
    assert (REPO / config).is_file(), f"{config} does not exist (the paper-scale config is owned by configs/)"
    cfg = load_config(REPO / config, [f"{k}={v}" for k, v in overrides.items()])
    for key in ("data.emr", "data.ddi", "data.prepared", "train.storage_path"):
        assert key in overrides and overrides[key].startswith("s3://"), f"{key} must be set to an s3:// URI"
    assert cfg.train.storage_path == overrides["train.storage_path"]
    assert cfg.train.use_gpu is True


def test_rayjob_working_dir_is_the_image_workdir():
    from cluster_files import dockerfile

    runtime_env = yaml.safe_load(_rayjob()["spec"]["runtimeEnvYAML"])
    workdirs = {v: [i.args for i in dockerfile(v) if i.keyword == "WORKDIR"][-1] for v in ("gpu", "cpu")}
    assert runtime_env == {"working_dir": workdirs["cpu"]} and workdirs["cpu"] == workdirs["gpu"]
    submitter = _rayjob()["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert _image_variant(submitter["image"]) == "cpu", "the submitter uploads the working dir from its image"


def test_rayjob_workers_fit_its_gpu_group():
    from dpr_dist.config import load_config

    _, overrides = _entrypoint_overrides()
    cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    groups = [g for g in _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
              if gpus(g["template"]["spec"]["containers"][0])]
    capacity = sum(g["maxReplicas"] * gpus(g["template"]["spec"]["containers"][0]) for g in groups)
    assert cfg.train.num_workers <= capacity, f"{cfg.train.num_workers} GPU workers, room for {capacity}"
    pod_cpus = min(int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) for g in groups)
    assert cfg.train.cpus_per_worker * max(1, gpus(groups[0]["template"]["spec"]["containers"][0])) <= pod_cpus


# ----------------------------------------------------------------------------- cluster layout
@pytest.mark.parametrize("where,spec", CLUSTER_SPECS, ids=[w for w, _ in CLUSTER_SPECS])
def test_cluster_autoscales_from_a_cpu_head(where, spec):
    assert spec["rayVersion"] == ray_version(), f"{where}: rayVersion != pyproject's ray pin"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0", f"{where}: the head should run no tasks"
    for c in head["template"]["spec"]["containers"]:
        assert gpus(c) == 0 and _image_variant(c["image"]) == "cpu", f"{where}: the head is a CPU node"
    for g in spec["workerGroupSpecs"]:
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"] and g["maxReplicas"] >= 1, g["groupName"]
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"] == res["limits"], f"{where}/{g['groupName']}: requests must equal limits"


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_training_clusters_have_an_autoscaling_gpu_group(name):
    spec = dict(ray_cluster_specs())[f"{name}:spec" if name == "raycluster.yaml" else f"{name}:spec.rayClusterSpec"]
    gpu_groups = [g for g in spec["workerGroupSpecs"] if gpus(g["template"]["spec"]["containers"][0])]
    assert gpu_groups, f"{name}: no worker group asks for nvidia.com/gpu"
    for g in gpu_groups:
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1, f"{name}/{g['groupName']}: scale from 0"
        assert g["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == \
            g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def test_containers_run_the_projects_images():
    seen = set()
    for where, c in containers():
        variant = _image_variant(c["image"])
        assert variant == ("gpu" if gpus(c) else "cpu"), f"{where}: {c['image']} on a pod with {gpus(c)} GPUs"
        seen.add(c["image"])
    assert seen == set(built_images()), "both published images are used"


def test_ray_pods_use_the_s3_service_account_and_the_submitter_does_not():
    account = kube_docs()["serviceaccount.yaml"]["metadata"]["name"]
    for where, template in pod_templates():
        sa = template["spec"].get("serviceAccountName")
        if "submitterPodTemplate" in where:
            assert sa is None, f"{where}: the submitter needs no S3 access"
        else:
            assert sa == account, f"{where}: serviceAccountName {sa!r} != {account!r}"


# ----------------------------------------------------------------------------- token authentication
@pytest.mark.parametrize("where,spec", CLUSTER_SPECS, ids=[w for w, _ in CLUSTER_SPECS])
def test_cluster_token_auth_comes_from_the_secret(where, spec):
    assert spec.get("authOptions") == {"mode": "token", "secretName": SECRET}, (
        f"{where}: authOptions must name the token Secret (the operator authenticates its own calls with it)")
    autoscaler_env = spec.get("autoscalerOptions", {}).get("env", [])
    _assert_token_env(_env({"env": autoscaler_env}), f"{where}.autoscalerOptions")


def test_every_ray_container_gets_the_token_from_the_secret():
    wheres = []
    for where, c in containers():
        _assert_token_env(_env(c), where)
        wheres.append(where)
    assert any("submitterPodTemplate" in w for w in wheres) and len(wheres) >= 7


def test_serving_pods_start_ray_in_the_shipped_serve_ingress_mode():
    """Ray reads the ingress mode when it starts, so the RayService's pods must carry it."""
    from dpr_dist.config import ServeConfig
    from dpr_dist.serve.ingress import ingress_env, running_ingress

    serving = [(w, c) for w, c in containers() if w.startswith("rayservice.yaml")]
    assert len(serving) >= 2  # head and workers
    for where, c in serving:
        env = {k: e.get("value") for k, e in _env(c).items()}
        assert {k: env.get(k) for k in ingress_env(ServeConfig().ingress)} == ingress_env(ServeConfig().ingress), where
        assert running_ingress(env) == ServeConfig().ingress


def _assert_token_env(env: dict[str, dict], where: str) -> None:
    assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE must be token"
    token = env.get("RAY_AUTH_TOKEN")
    assert token is not None and "value" not in token, f"{where}: RAY_AUTH_TOKEN must come from a Secret"
    assert token["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": SECRET_KEY}, where


# ----------------------------------------------------------------------------- AWS cluster launcher
def test_aws_config_validates_with_rays_schema():
    import importlib.util
    import json

    root = Path(importlib.util.find_spec("ray").submodule_search_locations[0])
    schema = json.loads((root / "autoscaler" / "ray-schema.json").read_text())
    assert not _errors(aws_config(), schema), "\n".join(_errors(aws_config(), schema))
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(aws_config())))


def test_aws_layout_cpu_head_and_gpu_workers_from_zero():
    cfg = aws_config()
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert not re.match(r"^(g|p)\d", head["node_config"]["InstanceType"]), "the head is a CPU instance"
    assert head["resources"] == {"CPU": 0}
    gpu_types = {k: t for k, t in types.items() if re.match(r"^(g|p)\d", t["node_config"]["InstanceType"])}
    assert {t["node_config"]["InstanceType"].split(".")[0] for t in gpu_types.values()} >= {"g5", "p4d"}
    for name, t in types.items():
        if name != cfg["head_node_type"]:
            assert t["min_workers"] == 0 and t["max_workers"] >= 1, name
            image = t.get("docker", {}).get("worker_image", cfg["docker"]["image"])
            assert _image_variant(image) == ("gpu" if name in gpu_types else "cpu"), name
        assert "IamInstanceProfile" in t["node_config"], f"{name}: S3 access through an instance profile"
    assert _image_variant(cfg["docker"]["head_image"]) == "cpu"
    assert cfg["max_workers"] >= sum(t.get("max_workers", 0) for n, t in types.items() if n != cfg["head_node_type"])


def test_aws_ray_starts_with_token_auth_from_the_mounted_token_file():
    cfg = aws_config()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), key
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN" not in AWS_CONFIG.read_text(), "the token is mounted from a file, never inlined"


def test_aws_setup_installs_the_checkout_and_syncs_nothing_else():
    cfg = aws_config()
    installs = [c for c in cfg["setup_commands"] if "pip install" in c]
    assert len(installs) == 1 and "--no-deps" in installs[0], "install over the image, keeping its dependencies"
    mounts = {remote: local for remote, local in cfg["file_mounts"].items() if remote != "~/.ray/auth_token"}
    src = os.path.commonpath(list(mounts))
    assert f"cp -r {src} " in installs[0], f"the install must build the synced sources in {src}"
    assert mounts == {f"{src}/pyproject.toml": "./pyproject.toml", f"{src}/README.md": "./README.md",
                      f"{src}/dpr_dist": "./dpr_dist"}, "sync the package sources only (never data, runs, .venv)"
    for local in mounts.values():
        assert (REPO / local).exists(), local
    assert "**/__pycache__" in cfg["rsync_exclude"]


# ----------------------------------------------------------------------------- storage, secrets, docs
def test_data_and_checkpoints_share_one_s3_bucket():
    text = "\n".join((REPO / "cluster" / n).read_text() for n in (*KUBE_MANIFESTS, AWS_CONFIG.name))
    buckets = set(re.findall(r"s3://([^/\s\"']+)", text))
    assert len(buckets) == 1, f"manifests name several buckets: {sorted(buckets)}"
    (bucket,) = buckets
    assert bucket in (REPO / "docs" / "cluster.md").read_text(), "docs/cluster.md must say which bucket to replace"


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{20,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password value": re.compile(r"(?i)\b(password|passwd|pwd)\b\s*[:=]\s*['\"]?[^\s'\"$<{(]+"),
    "literal Ray token": re.compile(r"RAY_AUTH_TOKEN\s*[=:]\s*['\"]?(?![\s'\"]*$)(?!\$\()[^\s'\"]+"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
}


@pytest.mark.parametrize("path", [p for p in CHECKED_FILES if p.is_file()], ids=lambda p: str(p.relative_to(REPO)))
def test_no_credentials_or_literal_tokens(path):
    text = path.read_text()
    for what, pattern in SECRET_PATTERNS.items():
        m = pattern.search(text)
        assert m is None, f"{path.relative_to(REPO)}: looks like a {what} at offset {m.start()}"
    if path.suffix == ".yaml":
        for doc in yaml.safe_load_all(text):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), "Secrets are created, never committed"


def test_secret_scan_catches_what_it_should():
    samples = {
        "AWS access key id": "key: AKIA" + "ABCDEFGHIJKLMNOP",
        "literal Ray token": "RAY_AUTH_TOKEN=" + "f00dfeed1234",
        "password value": "password: " + "hunter2",
    }
    for what, sample in samples.items():
        assert SECRET_PATTERNS[what].search(sample), what
    assert not SECRET_PATTERNS["literal Ray token"].search(
        'export RAY_AUTH_TOKEN=$(kubectl get secret dpr-ray-auth -o jsonpath="{.data.auth_token}" | base64 -d)')


def test_docs_cover_every_manifest_and_name_files_that_exist():
    text = (REPO / "docs" / "cluster.md").read_text()
    for name in (*KUBE_MANIFESTS, AWS_CONFIG.name):
        assert f"cluster/{name}" in text, f"docs/cluster.md does not show how to use cluster/{name}"
    for ref in set(re.findall(r"(?<![\w/.-])((?:cluster|docker|jobs|configs)/[\w./-]+\.(?:yaml|py|md|cpu))\b", text)):
        if ref != "configs/paper.yaml":  # owned by configs/, checked by the RayJob test
            assert (REPO / ref).exists(), f"docs/cluster.md names {ref}, which does not exist"
    assert "docs/scaling.md" in text or "(scaling.md)" in text
    assert not re.search(r"\b(TODO|TBD|FIXME|XXX)\b", text)
