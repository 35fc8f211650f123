"""`python -m warmpath_cli.healthcheck HOST:PORT [--service NAME]`: is that server SERVING?

For container HEALTHCHECKs and exec probes. Asks the standard grpc.health.v1
`Health/Check` (the whole server by default, or one service) and exits 0 only
for SERVING. Anything else exits 1 with one line on stderr: NOT_SERVING (for
example a service draining on SIGTERM), an unknown service, or no answer
within the timeout.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["EXIT_NOT_SERVING", "EXIT_SERVING", "check", "main"]

EXIT_SERVING = 0
EXIT_NOT_SERVING = 1


def check(address: str, service: str = "", timeout: float = 3.0) -> str:
    """The serving status name the server at `address` reports for `service`.

    Raises grpc.RpcError when the server does not answer within `timeout`.
    """
    with grpc.insecure_channel(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warmpath_cli.healthcheck",
        description="Exit 0 only when a gRPC server reports SERVING (grpc.health.v1).",
    )
    parser.add_argument("address", help="host:port of the server")
    parser.add_argument("--service", default="", help="service name (default: whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    args = parser.parse_args(argv)
    try:
        status = check(args.address, args.service, args.timeout)
    except grpc.RpcError as error:
        print(f"{args.address}: {error.code().name}: {error.details()}", file=sys.stderr)
        return EXIT_NOT_SERVING
    if status != "SERVING":
        print(f"{args.address}: {status}", file=sys.stderr)
        return EXIT_NOT_SERVING
    return EXIT_SERVING


if __name__ == "__main__":
    sys.exit(main())
