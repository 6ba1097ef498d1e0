"""Readers shared by the container and cluster checks: pyproject.toml, constraints.txt, the
Dockerfiles, ``.dockerignore``, the image tags ``docker/README.md`` builds, and the manifests
in ``cluster/``. Everything is read from the working tree (once); nothing touches the network.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"gpu": REPO / "docker" / "Dockerfile", "cpu": REPO / "docker" / "Dockerfile.cpu"}
KUBE_MANIFESTS = ("raycluster.yaml", "rayjob.yaml", "rayservice.yaml", "serviceaccount.yaml")
AWS_CONFIG = REPO / "cluster" / "aws.yaml"
KUBERAY_SCHEMA = Path(__file__).resolve().parent / "schemas" / "kuberay-v1.schema.json"


# ----------------------------------------------------------------------------- project pins
@functools.cache
def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def pinned_version(requirements: list[str], name: str) -> str:
    """The ``==`` version of ``name`` among PEP 508 requirement strings."""
    for line in requirements:
        req = Requirement(line)
        if req.name.lower() == name:
            pins = [s.version for s in req.specifier if s.operator == "=="]
            assert len(pins) == 1, f"{name} is not pinned with == in {line!r}"
            return pins[0]
    raise AssertionError(f"{name} is not among the requirements {requirements}")


def ray_version() -> str:
    """The Ray version the project pins (``ray[...]==X`` in pyproject.toml)."""
    return pinned_version(pyproject()["project"]["dependencies"], "ray")


@functools.cache
def constraints() -> list[str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


# ----------------------------------------------------------------------------- Dockerfiles
@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` with continuations joined."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile (comments dropped, ``\\`` continuations joined)."""
    out: list[Instruction] = []
    buf, start = "", 0
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        keyword, _, args = (buf + stripped).partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, f"{path}: dangling line continuation at line {start}"
    return out


@functools.cache
def dockerfile(variant: str) -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILES[variant]))


def arg_defaults(instructions) -> dict[str, str]:
    """``ARG NAME=default`` values, in order (later ones win)."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.args:
            name, value = ins.args.split("=", 1)
            out[name.strip()] = value.strip().strip('"')
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    """Expand ``${NAME}`` and ``$NAME`` from ``args`` (unknown names are left as they are)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def base_image(instructions) -> str:
    """The (single-stage) ``FROM`` image with build-argument defaults expanded."""
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 1, "expected a single-stage Dockerfile"
    return substitute(froms[0].args.split()[0], arg_defaults(instructions))


def copy_sources(instructions) -> list[str]:
    """Context paths that ``COPY``/``ADD`` read (flags such as ``--chown`` skipped)."""
    out = []
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            assert len(words) >= 2, f"line {ins.line}: {ins.keyword} needs a source and a destination"
            out.extend(words[:-1])
    return out


def run_commands(instructions) -> list[str]:
    """``RUN`` command lines with build-argument defaults expanded."""
    args = arg_defaults(instructions)
    return [substitute(ins.args, args) for ins in instructions if ins.keyword == "RUN"]


# ----------------------------------------------------------------------------- .dockerignore
def pattern_regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax (Go ``filepath.Match`` plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@functools.cache
def dockerignore_patterns() -> tuple[tuple[bool, re.Pattern, str], ...]:
    """``(negated, regex, text)`` for each ``.dockerignore`` line, in order."""
    out = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = (line[1:] if negated else line).strip().lstrip("/").rstrip("/")
        out.append((negated, pattern_regex(text), text))
    return tuple(out)


def is_dockerignored(path: str) -> bool:
    """Whether the build context drops ``path`` (relative to the repository root).

    As Docker does, a pattern that matches a directory drops everything below it, and the
    last matching line wins (``!`` lines re-include).
    """
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    ignored = False
    for negated, regex, _ in dockerignore_patterns():
        if any(regex.match(p) for p in prefixes):
            ignored = not negated
    return ignored


# ----------------------------------------------------------------------------- images
_BUILD = re.compile(r"docker build\s+(?P<args>[^\n`]*?)\s\.(?=\s|$)")


@functools.cache
def built_images() -> dict[str, Path]:
    """Image tag -> Dockerfile, from the ``docker build -f FILE -t TAG .`` lines of docker/README.md
    (lines with ``--build-arg`` are variations, not the published images)."""
    out: dict[str, Path] = {}
    for m in _BUILD.finditer((REPO / "docker" / "README.md").read_text()):
        words = shlex.split(m.group("args"))
        if "--build-arg" in words:
            continue
        opts = dict(zip(words[::2], words[1::2], strict=True))
        out[opts["-t"]] = REPO / opts["-f"]
    assert out, "docker/README.md shows no `docker build -f FILE -t TAG .` command"
    return out


# ----------------------------------------------------------------------------- manifests
@functools.cache
def kube_docs() -> dict[str, dict[str, Any]]:
    """``{file name: document}`` of the Kubernetes manifests (one document per file)."""
    out = {}
    for name in KUBE_MANIFESTS:
        docs = [d for d in yaml.safe_load_all((REPO / "cluster" / name).read_text()) if d is not None]
        assert len(docs) == 1, f"cluster/{name}: expected one document, found {len(docs)}"
        out[name] = docs[0]
    return out


@functools.cache
def aws_config() -> dict[str, Any]:
    return yaml.safe_load(AWS_CONFIG.read_text())


@functools.cache
def kuberay_schema() -> dict[str, Any]:
    return json.loads(KUBERAY_SCHEMA.read_text())


def ray_cluster_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, RayClusterSpec)`` of every Ray cluster the manifests create."""
    for name, doc in kube_docs().items():
        spec = doc.get("spec", {})
        if doc["kind"] == "RayCluster":
            yield f"{name}:spec", spec
        elif doc["kind"] == "RayJob" and "rayClusterSpec" in spec:
            yield f"{name}:spec.rayClusterSpec", spec["rayClusterSpec"]
        elif doc["kind"] == "RayService":
            yield f"{name}:spec.rayClusterConfig", spec["rayClusterConfig"]


def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, pod template)`` of every pod the manifests define (head, workers, submitter)."""
    for where, spec in ray_cluster_specs():
        yield f"{where}.headGroupSpec", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"{where}.workerGroupSpecs[{group['groupName']}]", group["template"]
    for name, doc in kube_docs().items():
        if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            yield f"{name}:spec.submitterPodTemplate", doc["spec"]["submitterPodTemplate"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, container)`` of every container of every pod template."""
    for where, template in pod_templates():
        for c in template["spec"]["containers"]:
            yield f"{where}/{c['name']}", c


def gpus(container: dict[str, Any]) -> int:
    """``nvidia.com/gpu`` limit of a container (0 when absent)."""
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
