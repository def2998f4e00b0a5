"""An MCP server for Rein's gateway tests, built with the official Python SDK.

    python3 upstream.py stdio          # JSON-RPC on stdin/stdout
    python3 upstream.py http           # Streamable HTTP on 127.0.0.1, port printed as `PORT=<n>`

Tools: `echo` (returns its text), `digest` (SHA-256 of an environment variable or, over HTTP,
of the Authorization header, so a test can check a secret arrived without it being shown),
`slow` (reports progress every 50 ms for `seconds`), `ask` (asks the client's model through
a sampling request and returns the answer), `confirm` (a log message, then an
elicitation the client answers), `crash` (ends the process at once), `drop_table` (a tool the system declares as
admin, for deny tests). A resource `note://readme` and a prompt `review`.
"""

import asyncio
import hashlib
import os
import socket
import sys

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

server = MCPServer("rein-test-upstream")


@server.tool()
def echo(text: str) -> str:
    """Returns the text it was given."""
    return text


@server.tool()
def digest(ctx: Context, variable: str = "UPSTREAM_API_KEY") -> str:
    """SHA-256 (hex) of an environment variable, or of the Authorization header over HTTP."""
    value = os.environ.get(variable)
    if value is None:
        headers = ctx.headers or {}
        value = headers.get("authorization", "")
    return hashlib.sha256(value.encode()).hexdigest()


@server.tool()
async def slow(ctx: Context, seconds: float = 30.0) -> str:
    """Works for `seconds`, reporting progress every 50 ms."""
    steps = max(1, int(seconds / 0.05))
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, "working")
        await asyncio.sleep(0.05)
    return "done"


@server.tool()
async def ask(ctx: Context, question: str) -> str:
    """Asks the client's model (sampling) and returns its answer."""
    from mcp.types import SamplingMessage, TextContent

    result = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text=question))],
        max_tokens=50,
        related_request_id=ctx.request_id,
    )
    return f"the model said: {result.content.text}"


class Confirmation(BaseModel):
    proceed: bool


@server.tool()
async def confirm(ctx: Context, action: str) -> str:
    """Logs what it is about to do, asks the user to confirm (elicitation), reports the answer."""
    await ctx.info(f"about to {action}")
    answer = await ctx.elicit(f"Proceed with {action}?", Confirmation)
    if answer.action == "accept" and answer.data.proceed:
        return f"{action}: confirmed"
    return f"{action}: not confirmed"


@server.tool()
def crash() -> str:
    """Ends the server's process at once, as a crashing upstream would."""
    os._exit(3)


@server.tool()
def drop_table(table: str) -> str:
    """Pretends to drop a table."""
    return f"dropped {table}"


@server.resource("note://readme")
def readme() -> str:
    """A note."""
    return "read me"


@server.prompt()
def review(code: str) -> str:
    """A review prompt."""
    return f"Review this: {code}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        app = server.streamable_http_app(host="127.0.0.1")
        config = uvicorn.Config(app, log_level="warning")
        print(f"PORT={sock.getsockname()[1]}", flush=True)
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
