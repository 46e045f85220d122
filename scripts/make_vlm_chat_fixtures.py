"""Chat templates of real vision-language checkpoints rendered by transformers, for
crates/omni/tests/test_vlm.rs: the templates llava-hf's LLaVA-1.5 and HuggingFaceTB's
SmolVLM (Idefics3) processors ship (`chat_template.json`), and the prompt text
`apply_chat_template` makes of a few conversations whose turns hold images and text.

Run with a venv holding transformers 5.x (no download, no model):

    /work/peers/bin/python scripts/make_vlm_chat_fixtures.py

Writes chat_template.json into fixtures/llava/tiny-llava-{llama,qwen2}/ and
fixtures/idefics3/tiny-idefics3/ (so the tiny checkpoints carry their family's real
template), and fixtures/vlm-chat/reference.json: per family, each conversation and its
rendered text with add_generation_prompt=True.
"""

import json
import os

from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

LLAVA = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

SMOLVLM = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

IMAGE = {"type": "image"}


def text(t):
    return {"type": "text", "text": t}


CONVERSATIONS = [
    [{"role": "user", "content": [IMAGE, text("What is in the image?")]}],
    [
        {"role": "user", "content": [IMAGE, text("What colour is the circle?")]},
        {"role": "assistant", "content": [text("Red.")]},
        {"role": "user", "content": [text("And this one?"), IMAGE]},
    ],
    [{"role": "user", "content": [text("Hello there.")]}],
]

FAMILIES = {
    "llava": (LLAVA, ["llava/tiny-llava-llama", "llava/tiny-llava-qwen2"]),
    "idefics3": (SMOLVLM, ["idefics3/tiny-idefics3"]),
}


def main():
    reference = {}
    for family, (template, dirs) in FAMILIES.items():
        for d in dirs:
            with open(os.path.join(ROOT, "fixtures", d, "chat_template.json"), "w") as f:
                json.dump({"chat_template": template}, f, indent=2)
                f.write("\n")
        cases = []
        for conversation in CONVERSATIONS:
            rendered, _ = render_jinja_template(
                conversations=[conversation], chat_template=template, add_generation_prompt=True
            )
            cases.append({"messages": conversation, "text": rendered[0]})
            print(family, repr(rendered[0]))
        reference[family] = cases
    with open(os.path.join(ROOT, "fixtures", "vlm-chat", "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
