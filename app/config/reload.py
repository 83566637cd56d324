"""Reading the config file again while serving: every start-up check, then one swap.

What the running process built from the config at start-up (the listening socket, the
database, the store's queue and timeouts, the actors' limits, the middleware's bounds, the
postback connection pool) stays as it is, so a change to one of those keys is refused
with the key named. Everything looked up per request (campaigns, events, sources, origins,
postbacks, delivery schedule, the admin token) takes effect on the next request.

A new config that would leave the service with no campaign, or none of the ones it serves,
or without the admin token it has, is refused unless forced: such a file is more often an
accident (a truncated or wrong file) than a wish, and once in force it takes away the
admin route that could put things right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import structlog

from app.config.schema import Config, ConfigError, ServerConfig, load_config, with_server_overrides

log = structlog.get_logger("app.reload")

# [server] keys read on every request; every other [server] key was used at start-up.
_RUNTIME_SERVER_KEYS = frozenset({"admin_token", "metrics_public", "max_revenue",
                                  "max_concurrent_reports", "backup_keep", "dedupe_secret"})
# The postback connection pool is sized once.
_RESTART_DELIVERY_KEYS = ("concurrency",)


@dataclass(frozen=True)
class ConfigFile:
    """The config file given at start-up and the command-line flags that override it."""

    path: Path
    overrides: Mapping[str, object] = field(default_factory=dict)

    def read(self) -> Config:
        """The config as start-up reads it; raises ConfigError with a one-line diagnosis."""
        return with_server_overrides(load_config(self.path), "command line", **self.overrides)


def restart_key(old: Config, new: Config) -> str | None:
    """The first key whose new value only a restart can apply, or None."""
    for name in ServerConfig.__struct_fields__:
        if name not in _RUNTIME_SERVER_KEYS and (
                getattr(old.server, name) != getattr(new.server, name)):
            return f"server.{name}"
    for name in _RESTART_DELIVERY_KEYS:
        if getattr(old.delivery, name) != getattr(new.delivery, name):
            return f"delivery.{name}"
    return None


def refusal(old: Config, new: Config) -> str | None:
    """Why the new config would cut the service off (see the module docstring), or None."""
    if not new.campaigns:
        return "the new config has no campaigns"
    if old.campaigns and not (_by_id(old.campaigns, "cid").keys()
                              & _by_id(new.campaigns, "cid").keys()):
        return "the new config removes every campaign"
    if old.server.admin_token is not None and new.server.admin_token is None:
        return "the new config removes the admin token"
    return None


def changes(old: Config, new: Config) -> dict[str, list[str]]:
    """What a reload changed: campaigns, sources and events added, removed, changed."""
    found: dict[str, list[str]] = {}
    for kind, before, after in (
        ("campaigns", _by_id(old.campaigns, "cid"), _by_id(new.campaigns, "cid")),
        ("sources", _by_id(old.sources, "pid"), _by_id(new.sources, "pid")),
        ("events", _events(old), _events(new)),
    ):
        for verb, ids in (
            ("added", after.keys() - before.keys()),
            ("removed", before.keys() - after.keys()),
            ("changed", {key for key in before.keys() & after.keys()
                         if before[key] != after[key]}),
        ):
            if ids:
                found[f"{kind}_{verb}"] = sorted(ids)
    for section in ("server", "delivery", "lead_fields"):
        if getattr(old, section) != getattr(new, section):
            found.setdefault("sections_changed", []).append(section)
    return found


def _by_id(items: Iterable[Any], key: str) -> dict[str, Any]:
    return {getattr(item, key): item for item in items}


def _events(config: Config) -> dict[str, Any]:
    return {f"{campaign.cid}/{event.event_id}": event
            for campaign in config.campaigns for event in campaign.events}


class Reloader:
    """Re-reads the config file, checks it, and hands a good one to ``apply``.

    ``apply`` must swap everything at once (requests read the config once each), so a
    request sees the old config or the new one, never a mix.
    """

    def __init__(self, source: ConfigFile | None, current: Callable[[], Config],
                 apply: Callable[[Config], None], *,
                 catalog: Callable[[Config], Config] | None = None) -> None:
        self._source = source
        self._current = current
        self._apply = apply
        # [server] catalog = "database": the file's settings, the database's catalog.
        self._catalog = catalog

    def current(self) -> Config:
        return self._current()

    def reload(self, *, force: bool = False) -> dict[str, list[str]]:
        """Swap in the file's config and say what changed; raises ConfigError, keeping
        the old config in force, when the file is wrong, needs a restart, or (unless
        ``force``) would cut the service off."""
        if self._source is None:
            raise ConfigError("no config file was given at start-up: nothing to reload")
        new = self._source.read()
        if self._catalog is not None:
            new = self._catalog(new)
        old = self._current()
        reason = check(self._source.path, old, new, force=force)
        self._apply(new)
        return logged_changes(self._source.path, old, new, reason)


def check(path: Path, old: Config, new: Config, *, force: bool) -> str | None:
    """Raise ConfigError if ``new`` may not replace ``old`` (see ``Reloader.reload``);
    return the refusal that ``force`` overrode, or None."""
    key = restart_key(old, new)
    if key is not None:
        raise ConfigError(f"{path}: {key}: changed, and only a restart applies it")
    reason = refusal(old, new)
    if reason is not None and not force:
        raise ConfigError(f"{path}: refused: {reason} "
                          "(POST /api/admin/reload?force=true applies it anyway)")
    return reason


def logged_changes(path: Path, old: Config, new: Config,
                   forced: str | None) -> dict[str, list[str]]:
    """What changed, logged as the one ``config_reloaded`` line of a reload."""
    changed = changes(old, new)
    if forced is None:
        log.info("config_reloaded", path=str(path), **changed)
    else:
        log.warning("config_reloaded", path=str(path), forced=forced, **changed)
    return changed


def digest(config: Config) -> str:
    """The sha256 of the config in force (its canonical JSON, flags applied): equal in
    every process serving the same config, whatever the file's layout or comments.

    Its secrets are left out: the digest is public (``/healthz``), and a hash of a config
    whose every other value is known would let a weak token be guessed offline.
    """
    shown = msgspec.to_builtins(config)
    shown["server"]["admin_token"] = shown["server"]["dedupe_secret"] = None
    for campaign in shown["campaigns"]:
        campaign["event_tokens"] = []
        for postback in campaign["postbacks"]:
            postback["secret"] = postback["signing_secrets"] = None
    for source in shown["sources"]:
        source["signing_secrets"] = None
    return hashlib.sha256(msgspec.json.encode(shown)).hexdigest()


@dataclass(frozen=True)
class Reloaded:
    """A reload that is in force in every worker of ``serve --workers N``."""

    changes: dict[str, list[str]]
    summary: str


class Supervisor(Protocol):
    """The supervisor of the workers of ``serve --workers N``, seen from one of them."""

    async def reload(self, *, force: bool) -> Reloaded:
        """Reload every worker; raises ConfigError (no worker changed) or
        ReloadIncomplete."""
        ...


class ReloadIncomplete(Exception):
    """A new worker did not start: the workers restarted so far serve the new config."""


_supervisor: Supervisor | None = None


def supervised_by(supervisor: Supervisor) -> None:
    """In a worker of ``serve --workers N``: reloads go through ``supervisor``."""
    global _supervisor
    _supervisor = supervisor


def supervisor() -> Supervisor | None:
    """This process's supervisor, or None when it serves alone."""
    return _supervisor


def describe(changed: Mapping[str, list[str]]) -> str:
    """One line for people: ``campaigns_added: cmp_b; sources_changed: src_a``."""
    if not changed:
        return "no change"
    return "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in changed.items())

