"""The hello-world baseline for `bench.assemble`: a bare FastAPI app under the same uvicorn.

`python -m bench.hello --port P` runs it exactly as `python cli.py serve` runs Microbridge
(one worker, uvloop, httptools, no access log, log level warning), so the ratio of the two
request rates isolates what Microbridge adds on top of FastAPI and uvicorn.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Greeting(BaseModel):
    name: str = "world"


@app.get("/hello")
async def hello_get() -> dict[str, str]:
    return {"hello": "world"}


@app.post("/hello")
async def hello_post(greeting: Greeting) -> dict[str, str]:
    return {"hello": greeting.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Keep in step with the uvicorn.run call of `serve` in cli.py.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
