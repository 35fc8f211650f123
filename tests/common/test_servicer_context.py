"""The typed servicer context names only what grpc.aio's context really has."""

from __future__ import annotations

import inspect

import grpc

from warmpath_common.servicer_context import ServicerContext


def test_every_method_of_the_protocol_exists_on_grpc_aio_contexts() -> None:
    named = {
        name
        for name, member in vars(ServicerContext).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }
    assert named >= {"time_remaining", "peer", "invocation_metadata", "auth_context", "abort"}
    missing = [name for name in named if not hasattr(grpc.aio.ServicerContext, name)]
    assert not missing
    for name in named:
        ours = inspect.signature(getattr(ServicerContext, name)).parameters
        theirs = inspect.signature(getattr(grpc.aio.ServicerContext, name)).parameters
        assert list(ours) == list(theirs), name
