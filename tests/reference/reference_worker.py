#!/usr/bin/env python3
"""Black-box driver for the Python reference worker (anthropic==2.10.0).

Serves ONE already-claimed work item with the reference
`EnvironmentWorker.handle_item()`: the item is described by the same
environment variables the Rust `runner` reads (ANTHROPIC_WORK_ID,
ANTHROPIC_ENVIRONMENT_ID, ANTHROPIC_SESSION_ID, ANTHROPIC_WORK_SECRET and/or
ANTHROPIC_ENVIRONMENT_KEY, ANTHROPIC_BASE_URL).

    python reference_worker.py --workdir DIR --max-idle SECONDS

Exits 0 when the item was served; prints nothing but errors (to stderr).
Used by differential/parity tests only; it is not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys


def _parse_seconds(text: str) -> float:
    # Accept "1", "1.5" and the runner's "1s" spelling.
    text = text.strip()
    if text.endswith("s"):
        text = text[:-1]
    return float(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="session working directory")
    parser.add_argument("--max-idle", type=_parse_seconds, default=60.0, help="seconds idle at end_turn before exiting")
    args = parser.parse_args()

    # Only errors reach stderr; the SDK logs at WARNING and above otherwise.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    from anthropic import AsyncAnthropic  # imported late so --help works without the SDK

    base_url = os.environ.get("ANTHROPIC_BASE_URL")
    if not base_url:
        print("reference_worker: ANTHROPIC_BASE_URL is not set", file=sys.stderr)
        return 2

    # The client constructor insists on some credential; the worker replaces it
    # with a Bearer-only sub-client (sessions token from the work secret, else
    # the environment key) for every call it makes, so this value is never sent.
    api_key = os.environ.get("ANTHROPIC_ENVIRONMENT_KEY") or "unused-placeholder"

    async def run() -> None:
        client = AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=2)
        try:
            worker = client.beta.environments.work.worker(workdir=args.workdir, max_idle=args.max_idle)
            await worker.handle_item()
        finally:
            await client.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # noqa: BLE001 - report anything, concisely
        print(f"reference_worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
