#!/usr/bin/env python3
"""TLS in front of DynamoDB Local or the bench's SNS stub, for make bench.

DynamoDB and SNS in AWS are HTTPS; DynamoDB Local and the stub are plain HTTP
on loopback. With this proxy the bench can time a function's first TLS
connection (handshake, the crypto library's first random numbers) as it
happens in Lambda.

usage: bench_tls_proxy.py LISTEN_PORT UPSTREAM_PORT CERT_PEM KEY_PEM
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main():
    listen_port, upstream_port, cert, key = sys.argv[1:5]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(client_reader, client_writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", int(upstream_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", int(listen_port), ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
