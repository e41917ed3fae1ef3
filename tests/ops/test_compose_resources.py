"""Every compose file shares one resource directory (docs/resources.md) between all its
Servers, Workers and Beats: the same named volume at the path their settings name."""

from __future__ import annotations

import pytest
from tests.ops.test_compose import FILES, ROLES, fluxfunc_role, load, services, settings_of


@pytest.mark.parametrize("name", FILES)
def test_every_service_mounts_the_shared_resource_volume(name: str) -> None:
    volumes_seen = set()
    checked = 0
    for svc_name, service in services(name).items():
        if fluxfunc_role(service) not in ROLES:
            continue
        path = settings_of(service).resources.path
        mounts = dict(reversed(str(v).split(":")[:2]) for v in service.get("volumes", [])
                      if isinstance(v, str))
        assert path in mounts, f"{name}: {svc_name} does not mount resources.path ({path})"
        assert not mounts[path].startswith("."), f"{name}: {svc_name}: not a named volume"
        volumes_seen.add(mounts[path])
        checked += 1
    assert checked >= 3 and len(volumes_seen) == 1, (name, volumes_seen)
    assert volumes_seen <= set(load(name)["volumes"])
