"""Static checks of Dockerfile.jetson and .dockerignore: what can be checked without building the image.

`docker build` cannot run here: the image is arm64 (Jetson) on NVIDIA's L4T JetPack base, and this machine
has the docker client but no engine. These tests check the file against the repository instead: the base
image and its L4T build argument, that every COPY source exists (cpp/ included: the C++ sample is built in
the image), the entry point, that the runtime extra is installed and torch is not, and a few hadolint-style
rules that keep the image lean.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.jetson"
BASE_IMAGE = "nvcr.io/nvidia/l4t-jetpack"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, with line continuations joined and comments dropped."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return out


def stages(instrs):
    """One list of instructions per FROM; the first list holds the ARGs declared before any FROM."""
    groups = [[]]
    for ins in instrs:
        if ins[0] == "FROM":
            groups.append([])
        groups[-1].append(ins)
    return groups


def global_args(instrs) -> dict[str, str | None]:
    args = {}
    for keyword, rest in stages(instrs)[0]:
        assert keyword == "ARG", f"only ARG may come before the first FROM, found {keyword}"
        name, _, default = rest.partition("=")
        args[name] = default.strip('"') if default else None
    return args


def copy_sources(args: str) -> tuple[dict[str, str], list[str]]:
    """(flags, sources) of a COPY instruction, shell or JSON form."""
    flags = {}
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words[:-1]


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(relpath: str, patterns: list[str]) -> bool:
    """Rough .dockerignore matching (last matching pattern wins, `!` re-includes); enough for these paths."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = Path(relpath).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            result = not negate
    return result


def runs(instrs) -> list[str]:
    return [args for keyword, args in instrs if keyword == "RUN"]


def test_base_image_is_l4t_jetpack_with_l4t_version_build_arg():
    instrs = instructions()
    args = global_args(instrs)
    assert "L4T_VERSION" in args, "declare ARG L4T_VERSION before the first FROM so FROM can use it"
    assert re.fullmatch(r"r36\.\d+\.\d+", args["L4T_VERSION"] or ""), args["L4T_VERSION"]
    froms = [rest.split()[0] for keyword, rest in instrs if keyword == "FROM"]
    assert froms, "no FROM"
    for image in froms:
        assert image in (f"{BASE_IMAGE}:${{L4T_VERSION}}", f"{BASE_IMAGE}:$L4T_VERSION"), image


def test_every_copied_path_exists_in_the_repository():
    """cpp/ is written by another change: until it lands this test fails, naming it."""
    instrs = instructions()
    stage_names = {
        rest.split()[-1] for keyword, rest in instrs if keyword == "FROM" and " AS " in rest.upper()
    }
    patterns = dockerignore_patterns()
    copies = [copy_sources(rest) for keyword, rest in instrs if keyword in ("COPY", "ADD")]
    assert copies, "no COPY"
    for flags, sources in copies:
        if "from" in flags:
            assert flags["from"] in stage_names, f"COPY --from={flags['from']}: no such build stage"
            continue
        for source in sources:
            assert not re.match(r"\w+://", source), f"{source}: fetch remote files with RUN, not ADD/COPY"
            rel = source.rstrip("/") or "."
            assert (ROOT / rel).exists(), (
                f"Dockerfile.jetson copies {source}, which is missing from the repository"
            )
            assert not ignored(rel, patterns), (
                f"Dockerfile.jetson copies {source}, which .dockerignore excludes"
            )


def test_cpp_sample_is_configured_release_with_tensorrt_and_installs_sladkit_infer():
    build = " ".join(runs(instructions()))
    assert re.search(r"cmake -S \S*cpp", build) and "-DCMAKE_BUILD_TYPE=Release" in build
    assert "-DTENSORRT_ROOT=/usr" in build and "cmake --install" in build
    assert "/opt/sladkit/bin/sladkit-infer" in build
    cmake_files = [*ROOT.glob("cpp/**/CMakeLists.txt"), *ROOT.glob("cpp/**/*.cmake")]
    assert cmake_files, "cpp/CMakeLists.txt is missing: Dockerfile.jetson builds the C++ sample from cpp/"
    text = "\n".join(p.read_text() for p in cmake_files)
    assert "sladkit-infer" in text, "cpp/ defines no sladkit-infer target"
    assert re.search(r"install\s*\(", text), "cpp/ has no install() rule: the image runs `cmake --install`"


def test_entrypoint_is_sladkit():
    instrs = instructions()
    entrypoints = [rest for keyword, rest in instrs if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["sladkit"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "sladkit" in scripts


def _requirements(extra: str, extras: dict[str, list[str]]) -> list[str]:
    """An extra's requirements, with `sladkit[a,b]` references expanded."""
    out = []
    for req in extras[extra]:
        if m := re.fullmatch(r"sladkit\[([\w,\s-]+)\]", req.replace(" ", "")):
            for name in m[1].split(","):
                out += _requirements(name, extras)
        else:
            out.append(req)
    return out


def test_runtime_extra_is_installed_and_torch_is_not():
    pip_runs = [r for r in runs(instructions()) if "pip install" in r]
    assert any(re.search(r"""["']?\.\[runtime\]["']?""", r) for r in pip_runs), "install the runtime extra"
    for r in pip_runs:
        for command in r.split("&&"):
            if "pip install" in command:
                assert "torch" not in command, command
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    runtime = _requirements("runtime", extras)
    assert not [r for r in runtime if re.match(r"(torch|torchvision|timm|peft)\b", r)], runtime
    assert any(r.startswith("onnxruntime") for r in runtime)


@pytest.mark.parametrize("name", [".venv", "runs", "deploy", ".git", "__pycache__", ".pytest_cache"])
def test_dockerignore_keeps_the_context_small(name):
    assert ignored(name, dockerignore_patterns()) or ignored(f"sladkit/{name}", dockerignore_patterns())


def test_lean_image_rules():
    """hadolint-style: DL3015 (--no-install-recommends), DL3009 (remove apt lists), DL3042 (pip cache)."""
    instrs = instructions()
    env = " ".join(rest for keyword, rest in instrs if keyword == "ENV")
    for r in runs(instrs):
        if "apt-get install" in r:
            assert "--no-install-recommends" in r and "rm -rf /var/lib/apt/lists/*" in r, r
            assert "apt-get update" in r, "apt-get update and install belong in one RUN (DL3009)"
        for command in r.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command or "PIP_NO_CACHE_DIR=1" in env, command
    assert not [rest for keyword, rest in instrs if keyword == "FROM" and rest.split()[0].endswith(":latest")]
