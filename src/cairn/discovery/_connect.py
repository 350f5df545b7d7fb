"""``connect(url)``: a registry backend chosen by URL (``CAIRN_REGISTRY``).

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
  ``sqlite://`` (in memory): the embedded registry (the default,
  ``sqlite:///.cairn/registry.db``);
- ``consul://host:port`` (``consul+https://`` for TLS): Consul's HTTP API,
  served by cairn's registry server or a real Consul; ``?token=`` for ACLs;
- ``etcd://host:port[,host:port...]`` (``etcd+https://``): etcd v3.

Every scheme takes ``?protection=0.5`` (the protection threshold) and
``?wait=30`` (seconds a blocking query waits).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cairn.discovery._registry import Registry, registry_url

__all__ = ["connect"]

_COMMON = {"protection": ("protection_threshold", float), "wait": ("wait", float)}


def connect(url: str | None = None, **options: Any) -> Registry:
    """The registry at ``url``, else at ``$CAIRN_REGISTRY``, else the embedded default.

    ``options`` go to the backend's constructor (``clock=``,
    ``protection_threshold=``, ``poll_interval=`` ...) and win over the URL's
    query parameters. Raises ``ValueError`` for a URL it cannot use, and
    ``ImportError`` naming the extra to install when a backend's dependencies
    are missing.
    """
    text = registry_url(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    kwargs: dict[str, Any] = {}
    for key, (name, kind) in _COMMON.items():
        if key in query:
            try:
                kwargs[name] = kind(query.pop(key))
            except ValueError as exc:
                raise ValueError(f"registry URL {text!r}: {key}= must be a number") from exc
    if scheme == "sqlite":
        from cairn.discovery._sqlite import SQLiteRegistry

        if parts.netloc:
            raise ValueError(
                f"registry URL {text!r}: a sqlite URL has no host; use sqlite:///relative/path.db, "
                "sqlite:////absolute/path.db or sqlite:// for memory"
            )
        path = unquote(parts.path)[1:] if parts.path else ""
        if "poll" in query:
            kwargs["poll_interval"] = float(query.pop("poll"))
        _no_leftovers(text, query)
        kwargs.update(options)
        return SQLiteRegistry(path or ":memory:", **kwargs)
    if scheme in ("consul", "consul+http", "consul+https", "http", "https"):
        from cairn.discovery._consul import ConsulRegistry

        _need_host(text, parts.hostname)
        tls = scheme in ("consul+https", "https")
        if "token" in query:
            kwargs["token"] = query.pop("token")
        _no_leftovers(text, query)
        kwargs.update(options)
        port = parts.port or 8500
        return ConsulRegistry(f"{'https' if tls else 'http'}://{parts.hostname}:{port}", **kwargs)
    if scheme in ("etcd", "etcd+http", "etcd+https"):
        from cairn.discovery._etcd import EtcdRegistry

        tls = scheme == "etcd+https"
        hosts = [h for h in parts.netloc.split(",") if h]
        if not hosts:
            _need_host(text, None)
        if "prefix" in query:
            kwargs["prefix"] = query.pop("prefix")
        _no_leftovers(text, query)
        kwargs.update(options)
        endpoints = [
            f"{'https' if tls else 'http'}://{h if ':' in h else h + ':2379'}" for h in hosts
        ]
        return EtcdRegistry(endpoints, **kwargs)
    raise ValueError(
        f"registry URL {text!r}: unknown scheme {scheme!r}; use sqlite:///path, consul://host:port "
        "or etcd://host:port"
    )


def _need_host(text: str, host: str | None) -> None:
    if not host:
        raise ValueError(f"registry URL {text!r} needs a host, e.g. consul://127.0.0.1:8500")


def _no_leftovers(text: str, query: dict[str, str]) -> None:
    if query:
        raise ValueError(f"registry URL {text!r}: unknown parameter(s) {sorted(query)}")
