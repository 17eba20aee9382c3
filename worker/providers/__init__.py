"""The stream providers' duration clients, one per provider that has durations, built from settings."""

from __future__ import annotations

import aiohttp

from shared.settings import Settings
from worker.providers.base import ProviderClient
from worker.providers.tokbox import VonageVideoClient
from worker.providers.vimeo import VimeoClient
from worker.providers.voxeet import DolbyClient
from worker.providers.wistia import WistiaClient
from worker.providers.youtube import YouTubeClient

CLIENT_CLASSES: dict[str, type[ProviderClient]] = {
    cls.name: cls for cls in (YouTubeClient, VimeoClient, VonageVideoClient, DolbyClient, WistiaClient)
}


def new_http_session(settings: Settings) -> aiohttp.ClientSession:
    """The HTTP session the clients share: enough connections for every provider's concurrency,
    and no cookie jar, since no provider API needs cookies and none should see another's."""
    connector = aiohttp.TCPConnector(limit=max(100, settings.provider_concurrency * len(CLIENT_CLASSES)))
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def build_clients(settings: Settings, http: aiohttp.ClientSession) -> dict[str, ProviderClient]:
    """One client per provider (YOUTUBE, VIMEO, TOKBOX, VOXEET, WISTIA) on one HTTP session."""
    return {name: cls(http, settings) for name, cls in CLIENT_CLASSES.items()}


__all__ = ["CLIENT_CLASSES", "ProviderClient", "build_clients", "new_http_session"]
