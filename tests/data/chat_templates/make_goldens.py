#!/usr/bin/env python3
"""Renders every template here on every conversation in cases.json with Jinja2,
the way Hugging Face's apply_chat_template does (sandboxed, trim_blocks,
lstrip_blocks, raise_exception, strftime_now), and writes goldens.json.
tests/test_chat_template.cpp checks quarrel's renderer against it.

Run from this directory: python3 make_goldens.py  (needs jinja2)."""
import json
import pathlib

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

BOS, EOS, DATE = "<s>", "</s>", "05 Mar 2025"

# Template file -> the name quarrel detects it as, and whether it is the
# canonical source of that name (what --chat-template NAME renders).
TEMPLATES = {
    "chatml": ("chatml", True), "smollm2": ("chatml", False), "qwen2": ("chatml", False),
    "llama2": ("llama2", True), "llama3": ("llama3", True), "llama3.1": ("llama3.1", True),
    "llama3.2": ("llama3.2", True), "mistral-v0.1": ("mistral", False), "mistral-v0.2": ("mistral", True),
    "mistral-v1": ("mistral-v1", True), "mistral-v3": ("mistral-v3", True),
    "mistral-v3-tekken": ("mistral-v3-tekken", True), "mistral-v7": ("mistral-v7", True),
    "phi3-mini": ("phi3-mini", True), "phi3-small": ("phi3", False), "phi3.5-mini": ("phi3", True),
    "gemma2": ("gemma", True), "gemma3": ("gemma3", True), "zephyr": ("zephyr", True),
}


def raise_exception(message):
    raise TemplateError(message)


def render(source, messages, add_generation_prompt):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: DATE
    return env.from_string(source).render(messages=messages, bos_token=BOS, eos_token=EOS,
                                          add_generation_prompt=add_generation_prompt)


def main():
    here = pathlib.Path(__file__).parent
    cases = json.loads((here / "cases.json").read_text())
    out = {"bos_token": BOS, "eos_token": EOS, "date": DATE, "templates": []}
    for name, (detected, canonical) in TEMPLATES.items():
        source = (here / f"{name}.jinja").read_text()
        results = []
        for case in cases:
            r = {"case": case["name"]}
            try:
                r["output"] = render(source, case["messages"], case.get("add_generation_prompt", True))
            except TemplateError as e:
                r["error"] = str(e)
            results.append(r)
        out["templates"].append({"file": f"{name}.jinja", "detected": detected, "canonical": canonical,
                                 "results": results})
    (here / "goldens.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
