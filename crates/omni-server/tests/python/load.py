#!/usr/bin/env python3
"""Bounded load test of `omni serve` on loopback: many concurrent clients, mixed endpoints,
a fixed number of requests; then over-limit traffic. Prints one JSON report.

    python load.py --base-url http://127.0.0.1:8080 --api-key K --image photo.png \
        --clients 64 --requests 512

Exits non-zero on any 5xx, connection error or timeout, or when over-limit requests do not
get 413/429. Uses httpx (a dependency of the openai package).
"""

import argparse
import asyncio
import base64
import json
import random
import statistics
import sys
import time

import httpx


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def mix(image_url):
    """(name, method, path, json body) of each kind of request, with its weight."""
    chat = {"model": "smollm2-135m-instruct", "max_tokens": 16, "temperature": 0.7,
            "messages": [{"role": "user", "content": "Name a fruit and its colour."}]}
    stream = dict(chat, stream=True)
    return [
        (30, "embed-text", "POST", "/v1/embeddings", {"input": ["a red bicycle", "a quiet lake at dawn"]}),
        (15, "embed-image", "POST", "/v1/embeddings",
         {"input": [{"type": "image_url", "image_url": {"url": image_url}}]}),
        (15, "chat", "POST", "/v1/chat/completions", chat),
        (10, "chat-stream", "POST", "/v1/chat/completions", stream),
        (15, "search", "POST", "/v1/search", {"query": "an animal", "k": 5}),
        (15, "models", "GET", "/v1/models", None),
    ]


async def run(args):
    with open(args.image, "rb") as f:
        image_url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    kinds = mix(image_url)
    weights = [k[0] for k in kinds]
    rng = random.Random(args.seed)
    plan = [rng.choices(kinds, weights)[0] for _ in range(args.requests)]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    results = []  # (kind, status, seconds)
    failures = []
    queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, limits=limits,
                                 timeout=args.timeout) as client:
        async def worker():
            while True:
                try:
                    _, name, method, path, body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    if body is not None and body.get("stream"):
                        async with client.stream(method, path, json=body) as r:
                            async for _ in r.aiter_lines():
                                pass
                            status = r.status_code
                    else:
                        r = await client.request(method, path, json=body)
                        status = r.status_code
                except Exception as e:  # connection reset, timeout, …
                    failures.append(f"{name}: {type(e).__name__}: {e}")
                    continue
                results.append((name, status, time.perf_counter() - t0))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.clients)))
        elapsed = time.perf_counter() - start

        # Over-limit traffic: oversized bodies and a flood of long completions.
        big = b"{" + b" " * (args.max_body_mb * 1024 * 1024 + 1024) + b"}"
        over = []
        r = await client.post("/v1/embeddings", content=big, headers={"content-type": "application/json"})
        over.append(("oversized-body", r.status_code, r.json().get("error", {}).get("message", "")))
        flood = {"model": "smollm2-135m-instruct", "max_tokens": 64,
                 "messages": [{"role": "user", "content": "Write a long story."}]}
        wide = httpx.Limits(max_connections=args.flood, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=args.base_url, headers=headers, limits=wide,
                                     timeout=args.timeout) as flooder:
            statuses = await asyncio.gather(*(flooder.post("/v1/chat/completions", json=flood)
                                              for _ in range(args.flood)), return_exceptions=True)
        flood_codes = [s.status_code if isinstance(s, httpx.Response) else repr(s) for s in statuses]

    by_status = {}
    for _, status, _ in results:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    by_kind = {}
    for name in sorted({r[0] for r in results}):
        lat = [r[2] for r in results if r[0] == name]
        by_kind[name] = {"n": len(lat), "p50_ms": round(1000 * percentile(lat, 50), 1),
                         "p99_ms": round(1000 * percentile(lat, 99), 1)}
    lat = [r[2] for r in results]
    report = {
        "clients": args.clients, "requests": len(plan), "completed": len(results),
        "seconds": round(elapsed, 2), "requests_per_sec": round(len(results) / elapsed, 2),
        "p50_ms": round(1000 * percentile(lat, 50), 1) if lat else None,
        "p99_ms": round(1000 * percentile(lat, 99), 1) if lat else None,
        "by_status": by_status, "by_kind": by_kind,
        "over_limit": {"oversized_body": over[0][1],
                       "flood": {str(c): flood_codes.count(c) for c in set(flood_codes)}},
        "failures": failures[:10],
    }
    print(json.dumps(report, indent=2))
    bad = [s for s in by_status if s.startswith("5")]
    ok = not failures and not bad and over[0][1] == 413
    ok = ok and all(c in (200, 429) for c in flood_codes)
    ok = ok and all(s in ("200", "429") for s in by_status)
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key")
    p.add_argument("--image", required=True)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--flood", type=int, default=200, help="concurrent long completions sent at once")
    p.add_argument("--max-body-mb", type=int, default=25, help="the server's --max-body-mb")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=7)
    sys.exit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
