"""An agent for Rein's gateway tests: the official MCP Python SDK as the client.

    python3 agent.py URL TOKEN STEPS_JSON

Connects to URL over Streamable HTTP with `Authorization: Bearer TOKEN`, initializes, runs the
steps and prints one JSON line per event, so the Rust test can follow (and act) as it goes:

    {"op": "initialized", "protocol": "..."}
    {"op": "list_tools", "tools": [...]}
    {"op": "progress", "message": "...", "progress": n}
    {"op": "sampling", "question": "..."}  (the upstream asked the client's model)
    {"op": "elicitation", "message": "..."} / {"op": "log", "level": "...", "data": ...}
    {"op": "call", "is_error": false, "text": [...]}  or  {"op": "call", "error": {...}}
    {"op": "read_resource", "text": [...]} / {"op": "list_resources", "uris": [...]}
    {"op": "get_prompt", "text": [...]} / {"op": "error", "where": "...", "message": "..."}

"""

import asyncio
import json
import sys

import httpx2
from mcp import ClientSession, MCPError, types
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def error_of(e: BaseException) -> dict:
    if isinstance(e, MCPError):
        return {"code": e.code, "message": e.message, "data": e.data}
    return {"code": None, "message": f"{type(e).__name__}: {e}", "data": None}


def texts(blocks) -> list:
    out = []
    for b in blocks or []:
        text = getattr(b, "text", None)
        if text is None:
            resource = getattr(b, "resource", None)
            text = getattr(resource, "text", None)
        if text is None:
            content = getattr(b, "content", None)
            text = getattr(content, "text", None)
        if text is not None:
            out.append(text)
    return out


async def step(session: ClientSession, s: dict) -> None:
    op = s["op"]
    try:
        if op == "list_tools":
            result = await session.list_tools()
            emit({"op": op, "tools": sorted(t.name for t in result.tools)})
        elif op == "call":

            async def progress(p: float, total, message) -> None:
                emit({"op": "progress", "progress": p, "message": message})

            result = await session.call_tool(
                s["name"],
                s.get("arguments", {}),
                progress_callback=progress if s.get("progress") else None,
                meta=s.get("meta"),
                read_timeout_seconds=s.get("timeout", 60),
            )
            emit({"op": op, "is_error": bool(result.is_error), "text": texts(result.content)})
        elif op == "list_resources":
            result = await session.list_resources()
            emit({"op": op, "uris": sorted(str(r.uri) for r in result.resources)})
        elif op == "read_resource":
            result = await session.read_resource(s["uri"])
            emit({"op": op, "text": [getattr(c, "text", None) for c in result.contents]})
        elif op == "get_prompt":
            result = await session.get_prompt(s["name"], s.get("arguments", {}))
            emit({"op": op, "text": texts(m for m in result.messages)})
        else:
            emit({"op": "error", "where": op, "message": "unknown step"})
    except Exception as e:  # the test reads what went wrong
        emit({"op": op, "error": error_of(e)})


async def sampling(context, params) -> types.CreateMessageResult:
    """The client's "model": answers every sampling request in upper case."""
    question = params.messages[-1].content.text
    emit({"op": "sampling", "question": question})
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=question.upper()),
        model="test-model",
    )


async def elicitation(context, params) -> types.ElicitResult:
    """The client's "user": accepts every elicitation."""
    emit({"op": "elicitation", "message": params.message})
    return types.ElicitResult(action="accept", content={"proceed": True})


async def logging(params) -> None:
    """Log messages the server sends."""
    emit({"op": "log", "level": params.level, "data": params.data})


async def main() -> None:
    url, token, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = create_mcp_http_client(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(60.0, read=120.0),
    )
    try:
        async with client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(
                    read,
                    write,
                    sampling_callback=sampling,
                    elicitation_callback=elicitation,
                    logging_callback=logging,
                ) as session:
                    init = await session.initialize()
                    emit({"op": "initialized", "protocol": init.protocol_version})
                    for s in steps:
                        await step(session, s)
    except BaseException as e:  # connection-level failures, after what was printed
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        emit({"op": "error", "where": "session", "message": f"{type(e).__name__}: {e}"})
    emit({"op": "done"})


if __name__ == "__main__":
    asyncio.run(main())
