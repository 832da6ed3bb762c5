"""The loopback Hub the publishing tests push to (``hub_server.py``), shared by the modules of this folder."""

from __future__ import annotations

import huggingface_hub
import pytest
from huggingface_hub import constants

from .hub_server import HubServer

TOKEN = "hf_test_token"


@pytest.fixture(scope="session")
def hub_server():
    server = HubServer(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture()
def hub(hub_server, monkeypatch, tmp_path):
    """An empty test Hub; the client pointed at it, online, without Xet, with a fake token and a throwaway cache."""
    hub_server.reset()
    home = tmp_path / "hf-home"
    for key, value in {"HF_ENDPOINT": hub_server.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
                       "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": TOKEN, "HF_HOME": str(home),
                       "HF_HUB_CACHE": str(home / "hub")}.items():
        monkeypatch.setenv(key, value)
    old_home = constants.HF_HOME
    for name, value in vars(constants).items():  # every cache and token path derived from HF_HOME
        if name.isupper() and isinstance(value, str) and value.startswith(old_home):
            monkeypatch.setattr(constants, name, str(home) + value[len(old_home):])
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setattr(constants, name, str(home / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", hub_server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        hub_server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # HfApi instances made at import time keep the endpoint they were made with.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub_server.url)
    import transformers.utils.hub

    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
    yield hub_server
    assert hub_server.unhandled == [], "the client used a route the test Hub does not implement"
