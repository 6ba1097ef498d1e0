"""What can be checked of docker/ without a Docker engine: base tags against the project's
pins, the build context, the entry points the images name, and the image tags."""

from __future__ import annotations

import ast
import re
import shlex

import pytest

from cluster_files import (DOCKERFILES, REPO, base_image, built_images, constraints, copy_sources, dockerfile,
                           dockerignore_patterns, is_dockerignored, pattern_regex, pinned_version, pyproject,
                           ray_version, run_commands)

RAY_TAG = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>3\d+)-(?P<platform>cpu|cu\d{3})$")
VARIANTS = sorted(DOCKERFILES)


def _tag(variant: str) -> re.Match:
    tag = base_image(dockerfile(variant))
    m = RAY_TAG.match(tag)
    assert m, f"{DOCKERFILES[variant].name}: base {tag!r} is not an explicit rayproject/ray:X.Y.Z-pyNN-PLATFORM tag"
    return m


@pytest.mark.parametrize("variant", VARIANTS)
def test_base_image_is_the_pinned_ray_release(variant):
    m = _tag(variant)
    assert m["ray"] == ray_version(), f"base image Ray {m['ray']} != pyproject.toml's ray=={ray_version()}"
    assert (m["platform"] == "cpu") == (variant == "cpu"), f"{variant} image on a {m['platform']} base"
    minimum = re.search(r">=\s*3\.(\d+)", pyproject()["project"]["requires-python"])
    assert int(m["py"][1:]) >= int(minimum.group(1)), f"Python {m['py']} is below requires-python"


def test_variants_share_ray_and_python():
    gpu, cpu = _tag("gpu"), _tag("cpu")
    assert (gpu["ray"], gpu["py"]) == (cpu["ray"], cpu["py"]), (
        f"head (CPU image) and GPU workers must run the same Ray and Python: {gpu.string} vs {cpu.string}")


def test_gpu_torch_is_the_cuda_build_of_the_constrained_release():
    runs = run_commands(dockerfile("gpu"))
    platform = _tag("gpu")["platform"]
    torch_runs = [r for r in runs if re.search(r"\btorch==", r)]
    assert len(torch_runs) == 1, "expected one RUN installing torch==VERSION"
    assert f"--index-url \"https://download.pytorch.org/whl/{platform}\"" in torch_runs[0], (
        f"torch must come from PyTorch's {platform} index, matching the base image's CUDA")
    assert f"torch=={pinned_version(constraints(), 'torch')}" in torch_runs[0]
    assert "constraints.txt" not in " ".join(runs), "the GPU image installs its own CUDA torch, not constraints.txt"
    assert f"torch-geometric=={pinned_version(constraints(), 'torch-geometric')}" in " ".join(runs)
    check = [r for r in runs if "torch.version.cuda" in r]
    assert check and f'"{platform}"' in check[0], "the build must check torch's CUDA against the base image's"


def test_cpu_torch_is_the_cpu_build_under_constraints():
    runs = run_commands(dockerfile("cpu"))
    torch_run = next(r for r in runs if re.search(r"install .*\btorch$", r))
    assert "--index-url \"https://download.pytorch.org/whl/cpu\"" in torch_run, (
        "the plain PyPI torch for Linux is a CUDA build")
    assert "-c /tmp/dpr-dist-src/constraints.txt" in torch_run
    pkg_run = next(r for r in runs if "torch-geometric" in r)
    assert "-c /tmp/dpr-dist-src/constraints.txt" in pkg_run, "torch-geometric and ray are held to constraints.txt"
    assert any("torch.version.cuda is None" in r for r in runs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_copied_files_exist_and_are_in_the_build_context(variant):
    sources = copy_sources(dockerfile(variant))
    assert sources, "nothing is copied into the image"
    for src in sources:
        assert src not in (".", "./"), "copy named paths, never the whole context"
        assert (REPO / src).exists(), f"{DOCKERFILES[variant].name} copies {src!r}, which is not in the repository"
        assert not is_dockerignored(src), f"{DOCKERFILES[variant].name} copies {src!r}, which .dockerignore drops"


@pytest.mark.parametrize("variant", VARIANTS)
def test_package_install_has_what_pip_needs(variant):
    """``pip install`` of the copied sources needs pyproject.toml, its readme and the package."""
    sources = set(copy_sources(dockerfile(variant)))
    needed = {"pyproject.toml", pyproject()["project"]["readme"], "dpr_dist"}
    assert needed <= sources, f"missing from the image's copy of the package: {sorted(needed - sources)}"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", "data/demo/emr/part-0.parquet", "data/mimic/emr.parquet", "runs/demo/ray/x.json",
    ".git/HEAD", "dpr_dist/__pycache__/config.cpython-311.pyc", "dpr_dist.egg-info/PKG-INFO",
    ".pytest_cache/v/cache", "some/where/records.parquet", "model/model.pt", ".ray/auth_token", ".env",
    "tests/conftest.py",
])
def test_dockerignore_keeps_data_envs_and_secrets_out(path):
    assert is_dockerignored(path), f"{path} would be sent to the Docker build context"


@pytest.mark.parametrize("path", [
    "pyproject.toml", "README.md", "constraints.txt", "dpr_dist/config.py",
    "dpr_dist/data/resources/ddi_templates.csv", "jobs/train_ag.py", "configs/demo.yaml",
])
def test_dockerignore_keeps_what_the_images_need(path):
    assert not is_dockerignored(path), f".dockerignore drops {path}, which the images need"


def test_dockerignore_matcher_follows_docker_semantics():
    """The matcher the tests above rely on: ``*`` stays within a path segment, ``**`` crosses
    segments, a name without a slash matches at the context root only."""
    assert pattern_regex("*.egg-info").match("dpr_dist.egg-info")
    assert not pattern_regex("*.egg-info").match("a/dpr_dist.egg-info")
    assert pattern_regex("**/*.pyc").match("a/b/c.pyc") and pattern_regex("**/*.pyc").match("c.pyc")
    assert not pattern_regex("data").match("dpr_dist/data")
    assert {"data", "runs", ".venv", ".git"} <= {text for _, _, text in dockerignore_patterns()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_entry_points_named_by_the_image_exist(variant):
    runs = " && ".join(run_commands(dockerfile(variant)))
    scripts = set(re.findall(r"\b(jobs/\w+\.py)\b", runs))
    assert "jobs/train_ag.py" in scripts, "the image should check the main job's entry point"
    for script in scripts:
        assert (REPO / script).is_file(), f"{script} named in {DOCKERFILES[variant].name} does not exist"
    console = set(re.findall(r"&&\s*([A-Za-z][\w-]*)\s+--help", runs)) - {"python"}
    assert console == {"dpr"}, f"console scripts checked at build time: {console}"
    target = pyproject()["project"]["scripts"]["dpr"]
    module, func = target.split(":")
    path = REPO / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"console script dpr -> {target}: {path} missing"
    names = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    assert func in names, f"console script dpr -> {target}: no function {func}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_image_ships_jobs_and_configs_in_its_workdir(variant):
    ins = dockerfile(variant)
    assert [i.args for i in ins if i.keyword == "WORKDIR"] == ["/home/ray/dpr-dist"]
    workdir_at = next(k for k, i in enumerate(ins) if i.keyword == "WORKDIR")
    relative = [shlex.split(i.args)[-2] for i in ins[workdir_at:] if i.keyword == "COPY"
                and shlex.split(i.args)[-1].startswith("./")]
    assert {"jobs", "configs"} <= set(relative), "jobs/ and configs/ must be copied into the working directory"


def test_image_tags_are_the_package_version():
    version = pyproject()["project"]["version"]
    assert built_images() == {
        f"ghcr.io/dpr-dist/dpr-dist:{version}-gpu": DOCKERFILES["gpu"],
        f"ghcr.io/dpr-dist/dpr-dist:{version}-cpu": DOCKERFILES["cpu"],
    }
    for variant in VARIANTS:
        labels = " ".join(i.args for i in dockerfile(variant) if i.keyword == "LABEL")
        assert f'org.opencontainers.image.version="{version}"' in labels, f"{variant}: image version label"


def test_package_data_is_declared_for_non_editable_installs():
    """The images install the package non-editably: files under dpr_dist/ that are not Python
    ship only when pyproject.toml declares them as package data."""
    declared = pyproject().get("tool", {}).get("setuptools", {}).get("package-data", {})
    missing = []
    for path in sorted((REPO / "dpr_dist").rglob("*")):
        if path.is_dir() or path.suffix in (".py", ".pyc", ".pyi") or "__pycache__" in path.parts:
            continue
        covered = False
        for pkg, patterns in declared.items():
            base = REPO if pkg == "*" else REPO.joinpath(*pkg.split("."))
            if pkg == "*" or base in path.parents:
                rel = path.relative_to(path.parent if pkg == "*" else base).as_posix()
                covered |= any(pattern_regex(p).match(rel) for p in patterns)
        if not covered:
            missing.append(path.relative_to(REPO).as_posix())
    assert not missing, ("`pip install .` leaves these out of the images; declare them in pyproject.toml, "
                         f"e.g. [tool.setuptools.package-data] dpr_dist = [\"data/resources/*.csv\"]: {missing}")
