"""The load-test client: a kept-alive connection the server closed meanwhile is reopened, not counted as an error."""

import asyncio

from helpdesk_triage.api.load_test import Connection

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_connection_the_server_closed_while_idle_is_reopened():
    async def scenario() -> list[int]:
        connections = 0

        async def one_answer_then_close(reader, writer):  # like a server whose keep-alive timeout ran out
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(one_answer_then_close, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Connection("127.0.0.1", port)
        statuses = []
        for _ in range(3):
            status, _, body = await client.request("GET", "/livez")
            assert body == b"ok"
            statuses.append(status)
            await asyncio.sleep(0.05)  # the server has closed the connection by now
        await client.close()
        server.close()
        await server.wait_closed()
        assert connections == 3
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 200]
