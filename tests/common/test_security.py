"""Who a call comes from, as the router's per-caller limits and permissions see it."""

from __future__ import annotations

from warmpath_common.security import peer_address


def test_callers_are_addresses_without_ports() -> None:
    assert peer_address("ipv4:10.0.0.7:51234") == "10.0.0.7"
    assert peer_address("ipv6:[::1]:5555") == "::1"
    assert peer_address("unix:/run/x.sock") == "unix:/run/x.sock"
    assert peer_address("") == "anonymous"
