"""``modelyard build`` and ``modelyard containerize``: a registry version as a Bento and an image.

``build`` prints only the Bento tag on stdout (``TAG=$(modelyard build penguins champion)``);
what it did and the Dockerfile's lint notes go to stderr.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

import typer

from cli.output import err, handle_errors, out, print_json, quiet_libraries
from modelyard.logs import configure_logging
from modelyard.settings import get_settings


class Batching(StrEnum):
    off = "off"
    queue = "queue"
    adaptive = "adaptive"


def _quiet(as_json: bool) -> None:
    settings = get_settings()
    configure_logging("WARNING" if as_json else settings.log_level)
    quiet_libraries()
    logging.getLogger("bentoml").setLevel(logging.WARNING)


@handle_errors
def build_command(
    name: str = typer.Argument(..., help="Registered model name."),
    version_or_alias: str = typer.Argument(
        ..., metavar="VERSION", help="Version number, or an alias resolved once (e.g. champion)."
    ),
    batching: Batching = typer.Option(
        Batching.queue,
        "--batching",
        help="queue: batch requests that arrive while the model is busy; adaptive: BentoML's "
        "dispatcher; off: one predict call per request.",
    ),
    max_batch_size: int = typer.Option(64, "--max-batch-size", min=2, help="Requests a batch."),
    max_latency_ms: int = typer.Option(
        10_000, "--max-latency-ms", min=1, help="Adaptive batching: longest wait before 503."
    ),
    base_image: str | None = typer.Option(
        None, "--base-image", help="Image the Dockerfile starts FROM (with Python 3.11)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build a Bento (service, pinned packages, Dockerfile) from one registered version."""
    _quiet(as_json)
    from serving.bento.build import BuildOptions, build_bento

    options = BuildOptions(
        batching=batching.value,
        max_batch_size=max_batch_size,
        max_latency_ms=max_latency_ms,
        base_image=base_image,
    )
    if not as_json:
        err.print(f"building a Bento of {name} {version_or_alias} ...")
    info = build_bento(name, version_or_alias, get_settings(), options=options)
    if as_json:
        print_json(_info_json(info))
        return
    err.print(
        f"{info.model} version {info.version} (model {info.bento_model}) -> Bento {info.tag}\n"
        f"Dockerfile: {info.dockerfile_path}"
    )
    for finding in info.findings:
        err.print(f"  lint: {finding.describe()}", highlight=False)
    out.print(info.tag, highlight=False)


@handle_errors
def containerize_command(
    tag: str = typer.Argument(..., help="Bento tag printed by `modelyard build`."),
    image_tag: str | None = typer.Option(
        None, "--image-tag", "-t", help="Image name:tag (default: the Bento tag)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Build an OCI image of a Bento with Docker (daemon answering) or else buildah."""
    _quiet(as_json)
    from serving.bento.containerize import containerize

    if not as_json:
        err.print(f"containerizing {tag} ...")
    image = containerize(tag, get_settings(), image_tag=image_tag)
    if as_json:
        print_json(
            {
                "image": image.image,
                "bento": image.bento,
                "engine": image.engine,
                "findings": [f.describe() for f in image.findings],
            }
        )
        return
    err.print(f"built image {image.image} with {image.engine}")
    out.print(image.image, highlight=False)


def _info_json(info: Any) -> dict[str, Any]:
    return {
        "tag": info.tag,
        "model": info.model,
        "version": info.version,
        "bento_model": info.bento_model,
        "path": str(info.path),
        "dockerfile": str(info.dockerfile_path),
        "labels": info.labels,
        "findings": [f.describe() for f in info.findings],
    }
