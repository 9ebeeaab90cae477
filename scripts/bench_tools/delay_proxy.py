#!/usr/bin/env python3
"""A TCP relay that delays every byte by a fixed time in each direction.

scripts/bench puts it between the poolers and PostgreSQL for the remote-*
scenarios, to stand for a network between the pooler and the database
(tc netem is not available on every machine). Order is kept: each chunk is
written DELAY after it was read.

  delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS
"""
import asyncio
import sys


async def relay(reader, writer, delay):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            loop.call_later(delay, writer.write, data)
    except (ConnectionError, OSError):
        pass
    await asyncio.sleep(2 * delay)  # what is still scheduled goes first
    try:
        writer.close()
    except (ConnectionError, OSError):
        pass


async def main():
    listen_port, target_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(relay(client_reader, server_writer, delay),
                             relay(server_reader, client_writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
