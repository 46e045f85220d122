#!/usr/bin/env python3
"""What the server's batching buys: N requests sent at once vs the same N one after another,
for embeddings (batched by the embedding worker) and chat completions (decoded together by
continuous batching). Prints a Markdown table.

    python batching.py --base-url http://127.0.0.1:8080 --n 8
"""

import argparse
import asyncio
import time

import httpx


def requests(kind, n):
    if kind == "embeddings (1 text each)":
        return [("/v1/embeddings", {"input": f"sentence number {i} about a walk in the park"}) for i in range(n)]
    if kind == "embeddings (1 image each)":
        return [("/v1/embeddings", {"input": [{"type": "image_url", "image_url": {"url": IMAGE}}]}) for _ in range(n)]
    return [("/v1/chat/completions", {
        "model": "smollm2-135m-instruct", "max_tokens": 64, "temperature": 0,
        "messages": [{"role": "user", "content": f"Write a short poem about the number {i}."}]}) for i in range(n)]


async def timed(client, batch, concurrent):
    t0 = time.perf_counter()
    if concurrent:
        rs = await asyncio.gather(*(client.post(p, json=b) for p, b in batch))
    else:
        rs = [await client.post(p, json=b) for p, b in batch]
    for r in rs:
        r.raise_for_status()
    tokens = sum(r.json().get("usage", {}).get("completion_tokens", 0) for r in rs)
    return time.perf_counter() - t0, tokens


async def main(args):
    global IMAGE
    import base64
    with open(args.image, "rb") as f:
        IMAGE = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(base_url=args.base_url, headers=headers, timeout=600,
                                 limits=httpx.Limits(max_connections=args.n * 2)) as client:
        print(f"| {args.n} requests | one after another | all at once | speed-up |")
        print("|---|---|---|---|")
        for kind in ["embeddings (1 text each)", "embeddings (1 image each)", "chat (64 tokens each)"]:
            batch = requests(kind, args.n)
            await timed(client, batch[:2], False)  # warm-up: load the model
            seq, tok_s = min([await timed(client, batch, False) for _ in range(args.repeat)])
            con, tok_c = min([await timed(client, batch, True) for _ in range(args.repeat)])
            extra = f" ({tok_s / seq:.0f} vs {tok_c / con:.0f} tokens/s)" if tok_s else ""
            print(f"| {kind} | {seq:.2f} s | {con:.2f} s | {seq / con:.2f}×{extra} |", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--api-key")
    p.add_argument("--image", required=True)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--repeat", type=int, default=2)
    asyncio.run(main(p.parse_args()))
