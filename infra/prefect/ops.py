"""Prefect work pools for Modelyard: the base job templates, and pools created idempotently.

``infra/prefect/templates/`` holds the Kubernetes (prefect-kubernetes) and ECS (prefect-aws) base
job templates: a ``job_configuration`` whose ``{{ placeholders }}`` the worker fills from a JSON
schema of ``variables`` (defaults, overridden by a deployment's job variables). Their ``image``
defaults to the flows image, named like ``modelyard containerize`` names images
(``<name>:v<version>``). Pools are created or updated with ``prefect work-pool create
--overwrite``, so running the same command twice leaves one pool with the same template.

Usage (``python -m infra.prefect.ops --help``)::

    python -m infra.prefect.ops pool modelyard-process --type process
    python -m infra.prefect.ops pool modelyard-kubernetes --type kubernetes --image IMAGE
    python -m infra.prefect.ops template ecs --image IMAGE > ecs.json
    python -m infra.prefect.ops check          # the templates, offline
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from infra.errors import DeployError

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATE_FILES = {"kubernetes": "kubernetes.json", "ecs": "ecs.json"}
POOL_TYPES = ("process", *TEMPLATE_FILES)
FLOWS_IMAGE_NAME = "modelyard-flows"
PLACEHOLDER = re.compile(r"{{\s*([\w.\-\[\]$]+)\s*}}")
CLI_TIMEOUT_S = 120


class TemplateError(DeployError):
    """A base job template is malformed or refers to variables it does not declare."""


def default_image() -> str:
    """The flows image for this version of Modelyard: ``modelyard-flows:v<version>``.

    Lowercase ``name:v<version>``, the form ``modelyard containerize`` gives its images.
    """
    try:
        release = version("modelyard")
    except PackageNotFoundError:  # a source tree that was never installed
        release = "0.0.0"
    return f"{FLOWS_IMAGE_NAME}:v{release}"


def load_template(kind: str) -> dict[str, Any]:
    """The base job template for ``kind`` (``kubernetes`` or ``ecs``). Raises ``TemplateError``."""
    if kind not in TEMPLATE_FILES:
        raise TemplateError(
            f"no base job template for pool type {kind!r}",
            hint=f"use one of: {', '.join(TEMPLATE_FILES)}",
        )
    path = TEMPLATES / TEMPLATE_FILES[kind]
    try:
        template = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TemplateError(f"cannot read the base job template {path}: {exc}") from exc
    if not isinstance(template, dict) or {"job_configuration", "variables"} - template.keys():
        raise TemplateError(f"{path} must be a mapping with job_configuration and variables")
    return template


def with_image(template: dict[str, Any], image: str) -> dict[str, Any]:
    """A copy of ``template`` whose ``image`` variable defaults to ``image``."""
    if not image or any(c.isspace() for c in image):
        raise TemplateError(f"image {image!r} is not an image reference (name:tag)")
    changed = copy.deepcopy(template)
    properties = changed["variables"].get("properties", {})
    if "image" not in properties:
        raise TemplateError("the template declares no image variable to set")
    properties["image"]["default"] = image
    return changed


def placeholders(value: Any) -> set[str]:
    """Every ``{{ name }}`` used anywhere in ``value`` (strings inside dicts and lists)."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value))
    return set()


def undeclared_placeholders(template: dict[str, Any]) -> set[str]:
    """Placeholders in ``job_configuration`` that name no declared variable.

    Runtime placeholders (``ctx.*``, ``prefect.*`` variables and blocks, ``$ENV``) are the
    worker's and Prefect's own, so they do not count.
    """
    declared = set(template["variables"].get("properties", {}))
    used = placeholders(template["job_configuration"])
    return {
        name
        for name in used
        if name not in declared and not name.startswith(("ctx.", "prefect.", "$"))
    }


def check_template(kind: str) -> list[str]:
    """Problems with the stored template for ``kind`` (empty when it is sound)."""
    problems = []
    template = load_template(kind)
    missing = undeclared_placeholders(template)
    if missing:
        problems.append(f"{kind}: job_configuration uses undeclared {sorted(missing)}")
    image = template["variables"]["properties"].get("image", {}).get("default")
    if image != default_image():
        problems.append(f"{kind}: image defaults to {image!r}, expected {default_image()!r}")
    return problems


def ensure_pool(name: str, kind: str, *, image: str | None = None) -> None:
    """Create work pool ``name`` of type ``kind``, or update it to our template (idempotent).

    Uses the ``prefect`` CLI of this interpreter against ``PREFECT_API_URL``. Raises
    ``DeployError`` with the CLI's output when it fails.
    """
    if kind not in POOL_TYPES:
        raise DeployError(f"unknown pool type {kind!r}", hint=f"use one of {', '.join(POOL_TYPES)}")
    command = [sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", name]
    command += ["--type", kind, "--overwrite"]
    with tempfile.TemporaryDirectory(prefix="modelyard-pool-") as folder:
        if kind in TEMPLATE_FILES:
            template = with_image(load_template(kind), image or default_image())
            path = Path(folder) / "base-job-template.json"
            path.write_text(json.dumps(template))
            command += ["--base-job-template", str(path)]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployError(f"`prefect work-pool create {name}` did not run: {exc}") from exc
    if done.returncode != 0:
        raise DeployError(
            f"`prefect work-pool create {name} --type {kind}` failed:\n"
            + (done.stderr or done.stdout).strip()[-2000:],
            hint="is the Prefect server up and PREFECT_API_URL pointing at it?",
        )


def main(argv: list[str] | None = None) -> int:
    """``pool``, ``template`` and ``check``; exit 0 done, 1 a check failed, 2 an error."""
    parser = argparse.ArgumentParser(prog="python -m infra.prefect.ops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    pool = commands.add_parser("pool", help="create or update a work pool (idempotent)")
    pool.add_argument("name")
    pool.add_argument("--type", dest="kind", choices=POOL_TYPES, default="process")
    pool.add_argument("--image", help=f"default image (default: {default_image()})")
    show = commands.add_parser("template", help="print a base job template as JSON")
    show.add_argument("kind", choices=sorted(TEMPLATE_FILES))
    show.add_argument("--image")
    commands.add_parser("check", help="check the stored templates offline")
    args = parser.parse_args(argv)
    try:
        if args.command == "pool":
            ensure_pool(args.name, args.kind, image=args.image)
            print(f"work pool {args.name!r} ({args.kind}) is ready")
        elif args.command == "template":
            print(json.dumps(with_image(load_template(args.kind), args.image or default_image())))
        else:
            problems = [p for kind in TEMPLATE_FILES for p in check_template(kind)]
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
