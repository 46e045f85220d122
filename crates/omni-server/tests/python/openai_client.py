#!/usr/bin/env python3
"""Integration check of `omni serve` with the official `openai` Python package, unchanged.

    python openai_client.py --base-url http://127.0.0.1:18181/v1 --api-key KEY \
        --image photo.jpg --audio speech.wav --expect-word dashwood

Prints one line per check and exits non-zero on the first failure. The chat models are
tiny (SmolLM2-135M), so only the structure of answers is checked, never their content.
Without --api-key the server is assumed to have no key and the wrong-key check is skipped.
"""

import argparse
import array
import base64
import math
import mimetypes
import os
import sys
import time

import openai
from openai import OpenAI

MAX_TOKENS = 24


def fail(name, msg):
    print(f"FAIL {name}: {msg}", flush=True)
    sys.exit(1)


def check(name, fn):
    """Run one check; it returns a short detail string or raises."""
    t0 = time.time()
    try:
        detail = fn()
    except AssertionError as e:
        fail(name, e)
    except openai.APIStatusError as e:
        fail(name, f"HTTP {e.status_code}: {e.message}")
    except Exception as e:  # connection errors, decoding errors, ...
        fail(name, f"{type(e).__name__}: {e}")
    print(f"ok   {name} ({time.time() - t0:.1f}s){': ' + detail if detail else ''}", flush=True)


def data_url(path):
    mime = mimetypes.guess_type(path)[0] or "image/png"
    with open(path, "rb") as f:
        return f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"


def audio_format(path):
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return {"mp3": "mp3", "flac": "flac", "ogg": "ogg", "oga": "ogg"}.get(ext, "wav")


def short(text, n=60):
    text = " ".join(str(text).split())
    return repr(text if len(text) <= n else text[: n - 1] + "…")


def is_vector(v):
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, float) and math.isfinite(x) for x in v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:18181/v1")
    ap.add_argument("--api-key", default=None, help="the server's key (omit if it has none)")
    ap.add_argument("--image", required=True, help="a png/jpg")
    ap.add_argument("--audio", required=True, help="a wav of English speech")
    ap.add_argument("--expect-word", required=True, help="a word the transcription must contain")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()

    client = OpenAI(base_url=args.base_url, api_key=args.api_key or "no-key",
                    timeout=args.timeout, max_retries=0)
    print(f"openai {openai.__version__} against {args.base_url}", flush=True)
    image_url = data_url(args.image)
    with open(args.audio, "rb") as f:
        audio_b64 = base64.b64encode(f.read()).decode()
    word = args.expect_word.lower()
    models = {}  # kind -> first model id of that kind

    # ---- models ----
    def models_list():
        data = list(client.models.list())
        assert data, "models.list() returned no models"
        for m in data:
            assert m.id, f"model without id: {m}"
            kind = getattr(m, "kind", None)
            if kind and kind not in models:
                models[kind] = m.id
        for kind in ("chat", "embeddings", "transcription"):
            assert kind in models, f"no model of kind {kind!r} among {[(m.id, getattr(m, 'kind', None)) for m in data]}"
        return ", ".join(f"{k}={v}" for k, v in models.items())
    check("models.list", models_list)

    # ---- chat ----
    def chat_plain():
        r = client.chat.completions.create(
            model=models["chat"], max_tokens=MAX_TOKENS,
            messages=[{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "Name three colours."}])
        assert r.choices, "no choices"
        c = r.choices[0]
        assert c.message.role == "assistant", f"role is {c.message.role!r}"
        assert c.message.content and c.message.content.strip(), "empty content"
        assert c.finish_reason in ("stop", "length"), f"finish_reason is {c.finish_reason!r}"
        assert r.usage is not None, "no usage"
        assert r.usage.prompt_tokens > 0, f"usage.prompt_tokens = {r.usage.prompt_tokens}"
        assert r.usage.completion_tokens > 0, f"usage.completion_tokens = {r.usage.completion_tokens}"
        return (f"{short(c.message.content)} finish={c.finish_reason} "
                f"usage={r.usage.prompt_tokens}+{r.usage.completion_tokens}")
    check("chat (non-streaming)", chat_plain)

    def chat_stream():
        stream = client.chat.completions.create(
            model=models["chat"], max_tokens=MAX_TOKENS, stream=True,
            messages=[{"role": "user", "content": "Count from one to ten in words."}])
        pieces, finish = [], None
        for chunk in stream:
            assert chunk.object == "chat.completion.chunk", f"chunk object is {chunk.object!r}"
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    pieces.append(ch.delta.content)
                if ch.finish_reason:
                    finish = ch.finish_reason
        text = "".join(pieces)
        assert len(pieces) >= 2, f"only {len(pieces)} content chunk(s): {text!r}"
        assert text.strip(), "joined streamed text is empty"
        assert finish in ("stop", "length"), f"final finish_reason is {finish!r}"
        return f"{len(pieces)} chunks {short(text)} finish={finish}"
    check("chat (streaming)", chat_stream)

    def chat_image():
        r = client.chat.completions.create(
            model=models["chat"], max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": image_url}}]}])
        text = r.choices[0].message.content
        assert text and text.strip(), "empty answer about the image"
        return short(text)
    check("chat with image_url part", chat_image)

    def chat_audio():
        r = client.chat.completions.create(
            model=models["chat"], max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "What is said in this recording?"},
                {"type": "input_audio", "input_audio": {"data": audio_b64, "format": audio_format(args.audio)}}]}])
        text = r.choices[0].message.content
        assert text and text.strip(), "empty answer about the audio"
        return short(text)
    check("chat with input_audio part", chat_audio)

    # ---- embeddings ----
    dims = {}

    def emb_text():
        r = client.embeddings.create(model=models["embeddings"], encoding_format="float",
                                     input=["a photo of a cat", "a red sports car"])
        assert len(r.data) == 2, f"{len(r.data)} vectors for 2 inputs"
        a, b = r.data[0].embedding, r.data[1].embedding
        assert is_vector(a) and is_vector(b), f"not lists of finite floats: {type(a).__name__}, {type(b).__name__}"
        assert len(a) == len(b), f"dims differ: {len(a)} vs {len(b)}"
        assert [d.index for d in r.data] == [0, 1], f"indices {[d.index for d in r.data]}"
        dims["text"], dims["vec"] = len(a), a
        return f"2 x {len(a)}"
    check("embeddings of 2 strings (float)", emb_text)

    def emb_default():
        # The openai package asks for base64 by default and decodes it itself.
        r = client.embeddings.create(model=models["embeddings"], input="a photo of a cat")
        v = r.data[0].embedding
        assert len(v) == dims["text"], f"dim {len(v)} != {dims['text']}"
        err = max(abs(x - y) for x, y in zip(v, dims["vec"]))
        assert err < 1e-5, f"differs from the float answer by {err}"
        return f"dim {len(v)}, max |diff| vs float {err:.1e}"
    check("embeddings (client default encoding)", emb_default)

    def emb_image():
        # openai-python sends `input` as given, so image parts pass through unchanged.
        r = client.embeddings.create(model=models["embeddings"], encoding_format="float",
                                     input=[{"type": "image_url", "image_url": {"url": image_url}}])
        assert len(r.data) == 1, f"{len(r.data)} vectors for 1 image"
        v = r.data[0].embedding
        assert is_vector(v), f"not a list of finite floats: {type(v).__name__}"
        assert len(v) == dims["text"], f"image dim {len(v)} != text dim {dims['text']}"
        return f"dim {len(v)}"
    check("embeddings of an image part", emb_image)

    def emb_base64():
        r = client.embeddings.create(model=models["embeddings"], encoding_format="base64",
                                     input=["a photo of a cat"])
        raw = r.data[0].embedding
        assert isinstance(raw, str), f"expected a base64 string, got {type(raw).__name__}"
        v = array.array("f", base64.b64decode(raw))
        if sys.byteorder == "big":
            v.byteswap()
        assert len(v) == dims["text"], f"decoded dim {len(v)} != {dims['text']}"
        err = max(abs(x - y) for x, y in zip(v, dims["vec"]))
        assert err < 1e-5, f"differs from the float answer by {err}"
        return f"dim {len(v)}"
    check("embeddings encoding_format=base64", emb_base64)

    # ---- transcription ----
    def transcribe(fmt):
        with open(args.audio, "rb") as f:
            return client.audio.transcriptions.create(model=models["transcription"], file=f, response_format=fmt)

    def tr_json():
        r = transcribe("json")
        text = r.text
        assert word in text.lower(), f"{args.expect_word!r} not in {text!r}"
        return short(text)
    check("transcription json", tr_json)

    def tr_text():
        text = transcribe("text")
        text = text if isinstance(text, str) else getattr(text, "text", str(text))
        assert word in text.lower(), f"{args.expect_word!r} not in {text!r}"
        return short(text)
    check("transcription text", tr_text)

    def tr_srt():
        text = transcribe("srt")
        text = text if isinstance(text, str) else str(text)
        assert "-->" in text, f"no '-->' in {text!r}"
        return short(text)
    check("transcription srt", tr_srt)

    def tr_vtt():
        text = transcribe("vtt")
        text = text if isinstance(text, str) else str(text)
        assert text.lstrip("\ufeff").startswith("WEBVTT"), f"does not start with WEBVTT: {text[:40]!r}"
        return short(text)
    check("transcription vtt", tr_vtt)

    # ---- speech ----
    def speech_stream():
        with client.audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", response_format="wav",
                input="Speech from omni. It streams as it is spoken.") as resp:
            chunks = list(resp.iter_bytes())
        audio = b"".join(chunks)
        assert audio[:4] == b"RIFF", f"not a WAV: {audio[:8]!r}"
        assert len(audio) > 48000, f"only {len(audio)} bytes"
        return f"{len(audio)} bytes in {len(chunks)} chunks"
    check("speech (streamed wav)", speech_stream)

    def speech_mp3_refused():
        try:
            client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="mp3")
        except openai.BadRequestError as e:
            assert "mp3" in str(e), str(e)
            return "BadRequestError"
        raise AssertionError("mp3 was accepted")
    check("speech mp3 -> BadRequestError", speech_mp3_refused)

    def chat_spoken():
        r = client.chat.completions.create(
            model=models["chat"], max_tokens=MAX_TOKENS, modalities=["text", "audio"],
            audio={"voice": "nova", "format": "wav"},
            messages=[{"role": "user", "content": "Say hello."}])
        audio = r.choices[0].message.audio
        data = base64.b64decode(audio.data)
        assert data[:4] == b"RIFF" and audio.transcript.strip(), audio
        return f"{len(data)} bytes: {short(audio.transcript)}"
    check("chat with a spoken reply (modalities text+audio)", chat_spoken)

    # ---- errors ----
    def unknown_model():
        try:
            client.chat.completions.create(model="no-such-model-xyz", max_tokens=4,
                                           messages=[{"role": "user", "content": "hi"}])
        except openai.NotFoundError as e:
            assert e.status_code == 404, f"status {e.status_code}"
            return f"404: {short(e.message)}"
        except openai.APIStatusError as e:
            raise AssertionError(f"expected NotFoundError (404), got {type(e).__name__} ({e.status_code}): {e.message}")
        raise AssertionError("an unknown model was accepted")
    check("unknown model -> NotFoundError", unknown_model)

    if args.api_key:
        def wrong_key():
            bad = OpenAI(base_url=args.base_url, api_key=args.api_key + "-wrong", timeout=args.timeout, max_retries=0)
            try:
                bad.chat.completions.create(model=models["chat"], max_tokens=1,
                                            messages=[{"role": "user", "content": "hi"}])
            except openai.AuthenticationError as e:
                return f"401: {short(e.message)}"
            except openai.APIStatusError as e:
                raise AssertionError(f"expected AuthenticationError (401), got {type(e).__name__} ({e.status_code})")
            raise AssertionError("a wrong API key was accepted")
        check("wrong API key -> AuthenticationError", wrong_key)
    else:
        print("skip wrong API key -> AuthenticationError (no --api-key given)", flush=True)

    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
