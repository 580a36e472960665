"""Entry point of the ``modelyard`` command. Each command group lives in its own module."""

from __future__ import annotations

import typer

from cli import build, demo, deploy, gateway, keys, models, monitor, promote, serve, train

app = typer.Typer(
    name="modelyard",
    help="Train, register, promote, serve and monitor scikit-learn models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train.train_command)
app.command("models")(models.models_command)
app.command("versions")(models.versions_command)
app.command("promote")(promote.promote_command)
app.command("rollback")(promote.rollback_command)
app.command("status")(promote.status_command)
app.command("history")(promote.history_command)
app.command("monitor")(monitor.monitor_command)
app.command("demo")(demo.demo_command)
app.add_typer(keys.keys_app, name="keys")
app.command("build")(build.build_command)
app.command("containerize")(build.containerize_command)
app.add_typer(serve.serve_app, name="serve")
app.add_typer(deploy.deploy_app, name="deploy")
app.command("gateway")(gateway.gateway_command)
app.add_typer(train.data_app, name="data")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
