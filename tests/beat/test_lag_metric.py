"""The Beat's lag reaches the Server's ``/metrics`` as ``fluxfunc_beat_lag_seconds``: the Beat
puts ``lagMs`` in its heartbeat, the Server reads the live heartbeats at scrape time."""

from __future__ import annotations

from collections.abc import Callable

from fluxfunc_beat.beat import Beat
from fluxfunc_common.heartbeat import heartbeat, list_services
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_server.metrics import Metrics


async def test_a_beat_behind_schedule_shows_its_lag_per_instance(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    behind = Beat(make_settings(), clients, store, instance="beat-behind")
    on_time = Beat(make_settings(), clients, store, instance="beat-on-time")
    behind.scheduler._note_lag(3250)  # what a pop taken 3.25 s late reports
    metrics = Metrics()
    async with (heartbeat(clients.main, clients.keys, "beat", "beat-behind", extra=behind.describe),
                heartbeat(clients.main, clients.keys, "beat", "beat-on-time", extra=on_time.describe),
                heartbeat(clients.main, clients.keys, "worker", "a-worker")):
        metrics.set_beats(await list_services(clients.main, clients.keys))
    text = metrics.render().decode()
    assert 'fluxfunc_beat_lag_seconds{instance="beat-behind"} 3.25' in text
    assert 'fluxfunc_beat_lag_seconds{instance="beat-on-time"} 0.0' in text
    assert 'instance="a-worker"' not in text


def test_no_beat_running_yields_an_empty_family() -> None:
    metrics = Metrics()
    metrics.set_beats([])
    assert "fluxfunc_beat_lag_seconds{" not in metrics.render().decode()
