"""One instance of an ``app`` service: ``python -m cairn.platform.worker APP --name N --instance-id ID``.

``cairn up`` starts one of these per replica, with the manifest's folder as
working directory and on ``sys.path``. It imports ``APP``
(``module:attribute``) and runs it with :func:`cairn.service.run`: registered
in ``$CAIRN_REGISTRY`` at the port it bound, heartbeating, draining on
SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["load_app", "main"]


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (dotted on both sides) and return the attribute.

    Raises :class:`ValueError` with what is wrong and what to check.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f'app {spec!r} must be "module:attribute", e.g. "inventory:app"')
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ValueError(
                f"app {spec!r}: no module {exc.name!r} (looked in {os.getcwd()} and sys.path); "
                "check the manifest's app key"
            ) from exc
        raise
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(
                f"app {spec!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise ValueError(f"app {spec!r} is not an ASGI app (not callable): {target!r}")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, import the app and serve it until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m cairn.platform.worker", description="Run one instance of an ASGI service."
    )
    parser.add_argument("app", help="module:attribute of the ASGI app")
    parser.add_argument("--name", required=True, help="the service name")
    parser.add_argument("--instance-id", default=None, help="the instance id (default: random)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ttl", type=float, default=None, help="registry TTL in seconds")
    parser.add_argument("--registry", default=None, help="registry URL (default $CAIRN_REGISTRY)")
    args = parser.parse_args(argv)

    from cairn.platform._orphan import watch_parent

    watch_parent()  # under `cairn up`: stop (drain) if it dies without stopping us

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = load_app(args.app)
    except ValueError as exc:
        print(f"cairn worker: {exc}", file=sys.stderr)
        return 2
    except Exception:
        print(f"cairn worker: importing {args.app!r} failed:", file=sys.stderr)
        traceback.print_exc()
        return 2

    from cairn.service import run

    options: dict[str, Any] = {
        "name": args.name,
        "instance_id": args.instance_id or os.environ.get("CAIRN_INSTANCE_ID"),
        "host": args.host,
        "port": args.port,
        "registry": args.registry or os.environ.get("CAIRN_REGISTRY"),
    }
    if args.ttl is not None:
        options["ttl"] = args.ttl
    version = getattr(app, "version", None)  # FastAPI's, for the registry and dashboard
    if isinstance(version, str) and version:
        options["meta"] = {"version": version}
    run(app, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
