"""A moto server on 127.0.0.1 with the production table, an uploads bucket and SSM parameters,
for functions running in other processes (the built artifact, RIE, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import boto3
from moto.server import ThreadedMotoServer

from store import bind_table, create_table


@contextmanager
def moto_server(
    table: str, bucket: str, parameters: Mapping[str, str] | None = None
) -> Iterator[str]:
    """The server's URL while it runs, with `table`, `bucket` and SecureString `parameters`."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        create_table(bind_table(table, region="us-east-1", host=url))
        boto3.client("s3", region_name="us-east-1", endpoint_url=url).create_bucket(Bucket=bucket)
        ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=url)
        for name, value in (parameters or {}).items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        yield url
    finally:
        server.stop()
