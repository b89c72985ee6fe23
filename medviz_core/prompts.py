"""The prompts medviz sends to MedGemma and the clean-up of the report it writes back.

Owns: the prompt texts as named presets (`medviz`: a full structured chest X-ray report
by default, a concise expert answer for a custom question; `original`: the original
visualizer's; `model-card`: MedGemma's model card's), the chat messages handed to `processor.apply_chat_template`
(`build_messages`), the bounds on a question, and `format_report`, which turns the model's
markdown-ish text into plain sectioned text for display and export.
Does not own: templating or tokenising the messages (the processor does that, engine/engine.py
calls it), decoding images (imaging/load.py) or streaming text (the engine yields raw pieces;
`format_report` is for finished text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from medviz_core.errors import RequestError
from medviz_core.limits import MAX_LABEL_CHARS, MAX_QUESTION_CHARS

CONTROL_TOKEN = re.compile(
    r"<(?:bos|eos|pad|unk|mask|start_of_turn|end_of_turn|start_of_image|end_of_image|image_soft_token"
    r"|start_of_audio|end_of_audio|audio_soft_token|unused\d+)>|\[multimodal\]"
)
"""Gemma 3's control tokens as they are spelled in text. A question or label holding one
could end the user turn, fake a model turn or add an image block, so it is refused (not
rewritten): the user sees what was wrong and nothing reaches the model changed."""

REPORT_SYSTEM_PROMPT = (
    "You are an expert radiologist reading a chest X-ray. Write a complete, structured "
    "report in plain clinical language. Describe only what the image shows, state normal "
    "findings briefly, and say so when image quality limits an assessment."
)

REPORT_QUESTION = (
    "Write a full radiology report for this chest X-ray with these sections:\n"
    "Technique: projection and image quality (rotation, inspiration, penetration).\n"
    "Findings, system by system:\n"
    "- Lungs: opacities, consolidation, nodules or masses, volume and vascularity.\n"
    "- Pleura: effusion, pneumothorax, thickening.\n"
    "- Heart and mediastinum: heart size, mediastinal contour, hila, trachea.\n"
    "- Bones and soft tissues: fractures, lesions, soft tissue abnormalities.\n"
    "- Lines and tubes: any devices and their position, or none.\n"
    "Impression: the most important findings in order of clinical significance."
)

QUESTION_SYSTEM_PROMPT = (
    "You are an expert radiologist looking at a chest X-ray. Answer the question directly "
    "and concisely, grounded in what the image shows. If the image cannot answer it, say so."
)


@dataclass(frozen=True)
class PromptPreset:
    """A named way of asking: system and user texts for the report and for a question, and their order."""

    name: str
    description: str
    report_system: str  # system text when no question is given
    report_text: str  # the user's text when no question is given
    question_system: str  # system text above a user's question
    text_first: bool  # the text before the image(s), as the model card and the original visualizer write it


ORIGINAL_REPORT_TEXT = """Analyze this chest X-ray and provide a comprehensive report covering:
            1. Lung Fields: Describe any abnormalities, opacities, or normal findings
            2. Heart: Assess size and cardiac silhouette
            3. Bones: Note any visible bone abnormalities
            4. Soft Tissues: Any notable findings
            5. Medical Devices: Identify any visible medical devices
            6. Overall Impression: Summary of findings"""
"""The original visualizer's report prompt, character for character (its indentation included)."""

PRESETS: dict[str, PromptPreset] = {
    preset.name: preset
    for preset in (
        PromptPreset(
            name="medviz",
            description="medviz's structured report (Technique, Findings by system, Impression); concise answers",
            report_system=REPORT_SYSTEM_PROMPT,
            report_text=REPORT_QUESTION,
            question_system=QUESTION_SYSTEM_PROMPT,
            text_first=False,
        ),
        PromptPreset(
            name="original",
            description="the original visualizer's prompts (UNHSAILLab/lvlm-interpret-medgemma), text before image",
            report_system="You are an expert radiologist. Provide a detailed, structured analysis.",
            report_text=ORIGINAL_REPORT_TEXT,
            question_system="You are an expert radiologist. Answer the question about the chest X-ray concisely "
            "and accurately.",
            text_first=True,
        ),
        PromptPreset(
            name="model-card",
            description="MedGemma's model card: 'Describe this X-ray' as an expert radiologist, text before image",
            report_system="You are an expert radiologist.",
            report_text="Describe this X-ray",
            question_system="You are an expert radiologist.",
            text_first=True,
        ),
    )
}
DEFAULT_PRESET = "medviz"


def check_preset(name: object) -> PromptPreset:
    """The preset called `name` (None: the default), or RequestError naming the choices."""
    if name is None:
        return PRESETS[DEFAULT_PRESET]
    if not isinstance(name, str) or name not in PRESETS:
        shown = repr(name)[:40]
        raise RequestError(f"prompt must be one of {', '.join(PRESETS)}; got {shown}")
    return PRESETS[name]


def build_messages(
    question: str | None,
    image: object,
    more: Sequence[object] = (),
    labels: Sequence[str] = (),
    preset: str | None = None,
) -> list[dict[str, object]]:
    """Chat messages for `processor.apply_chat_template` (transformers' multimodal format).

    A system message, then one user turn holding the image(s) and the text. With
    `question` None the text is the preset's report text under its report system text;
    otherwise it is the stripped question under the preset's question system text. The
    `medviz` preset (the default) puts the images first; `original` and `model-card` put
    the text first, as they do. `image` is passed through as is. Several images (`image`
    then `more`) each become their own image block, in order, each preceded by its label
    ("PA:") when `labels` gives one.
    Raises RequestError when the question is not a str of 1..MAX_QUESTION_CHARS characters
    after stripping, when it or a label holds a control token, or for an unknown preset.
    """
    chosen = check_preset(preset)
    if question is None:
        system, text = chosen.report_system, chosen.report_text
    else:
        system, text = chosen.question_system, check_question(question)
    pictures = [image, *more]
    content: list[dict[str, object]] = []
    for index, picture in enumerate(pictures):
        label = check_label(labels[index]) if index < len(labels) else ""
        if label:
            content.append({"type": "text", "text": f"{label}:"})
        content.append({"type": "image", "image": picture})
    asked: dict[str, object] = {"type": "text", "text": text}
    content = [asked, *content] if chosen.text_first else [*content, asked]
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": content},
    ]


def check_question(question: object) -> str:
    """The question stripped of surrounding whitespace, or RequestError saying what is wrong."""
    if not isinstance(question, str):
        raise RequestError(f"question must be a string or null; got {type(question).__name__}")
    stripped = question.strip()
    if not stripped:
        raise RequestError("question must not be empty or only whitespace")
    if len(stripped) > MAX_QUESTION_CHARS:
        raise RequestError(f"question must be at most {MAX_QUESTION_CHARS} characters; got {len(stripped)}")
    refuse_control_tokens(stripped, "question")
    return stripped


def check_label(label: object) -> str:
    """An image label as given (at most MAX_LABEL_CHARS, no control tokens), or RequestError."""
    if not isinstance(label, str):
        raise RequestError(f"an image label must be a string; got {type(label).__name__}")
    if len(label) > MAX_LABEL_CHARS:
        raise RequestError(f"an image label must be at most {MAX_LABEL_CHARS} characters; got {len(label)}")
    refuse_control_tokens(label, "an image label")
    return label


def refuse_control_tokens(text: str, what: str) -> None:
    """RequestError naming the first control token in `text` (e.g. `<end_of_turn>`), if any."""
    found = CONTROL_TOKEN.search(text)
    if found:
        raise RequestError(
            f"{what} must not contain the model's control token {found.group(0)}; write it without the angle brackets"
        )


_TURN_MARKERS = re.compile(r"<start_of_turn>(?:model|user)?|<end_of_turn>|<eos>|<bos>|<pad>")
_HEADING = re.compile(r"#{1,6}\s+(.+)")
_BULLET = re.compile(r"[*\-+•]\s+(.*)")
_BOLD_LEAD = re.compile(r"\*\*(.+?)\*\*\s*(.*)")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")
_SPACES = re.compile(r"[ \t\u00a0]+")


def format_report(text: str) -> str:
    """The model's report as plain sectioned text. Exactly, in this order:

    1. "\\r\\n" and "\\r" become "\\n"; the chat markers `<start_of_turn>` (with a following
       "model" or "user"), `<end_of_turn>`, `<eos>`, `<bos>` and `<pad>` become line breaks.
    2. In every line, runs of spaces, tabs and no-break spaces become one space; lines are
       stripped. A first non-empty line that is exactly "model" (the role echoed back) is
       dropped.
    3. Headers: a markdown heading ("## Findings") or a line that starts with a bold span
       ending in a colon or followed by one ("**Findings:** ...", "**Findings**: ...") or
       that is only a bold span ("**Impression**") becomes its text upper-cased with one
       trailing colon ("FINDINGS:") on its own line; text after it moves to the next line.
    4. Bullets: a line starting with "*", "-", "+" or "•" and a space starts with "- ";
       nesting is flattened. Numbered items ("1. ...") are left as they are.
    5. Emphasis: every remaining "**" and "__" is removed and "*word*" becomes "word".
    6. Blank lines: runs of blank lines become one; a header that follows text gets one
       blank line before it, and none follows a header; leading and trailing ones go.
    The result has no trailing newline; text without markdown only loses extra whitespace.
    """
    text = _TURN_MARKERS.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    first = next((i for i, line in enumerate(lines) if line), None)
    if first is not None and lines[first] == "model":
        del lines[first]
    pieces = [piece for line in lines for piece in _classify(line)]
    return "\n".join(_layout(pieces))


def _classify(line: str) -> list[tuple[str, str]]:
    """One cleaned line -> ("header" | "text" | "blank", text) pieces."""
    if not line:
        return [("blank", "")]
    heading = _HEADING.fullmatch(line)
    if heading:
        return [("header", _header(heading.group(1)))]
    bullet = _BULLET.fullmatch(line)
    if bullet and not line.startswith("**"):
        return [("text", "- " + _inline(bullet.group(1)))]
    bold = _BOLD_LEAD.fullmatch(line)
    if bold:
        label, rest = bold.group(1), bold.group(2)
        if label.rstrip().endswith(":") or rest.startswith(":") or not rest:
            tail = _inline(rest[1:] if rest.startswith(":") else rest)
            return [("header", _header(label))] + ([("text", tail)] if tail else [])
    return [("text", _inline(line))]


def _layout(pieces: list[tuple[str, str]]) -> list[str]:
    """Pieces -> lines: one blank line between blocks, one before each header, none after."""
    lines: list[str] = []
    previous = "blank"  # the start behaves like a blank line: no leading blanks
    for kind, text in pieces:
        if kind == "blank" or not text:
            if previous == "text":
                lines.append("")
                previous = "blank"
            continue
        if kind == "header" and previous == "text":
            lines.append("")
        lines.append(text)
        previous = kind
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _header(label: str) -> str:
    """"Findings:" -> "FINDINGS:" (emphasis removed; "" when nothing is left)."""
    name = _inline(label).rstrip(":").strip()
    return f"{name.upper()}:" if name else ""


def _inline(text: str) -> str:
    text = text.replace("**", "").replace("__", "")
    return _SPACES.sub(" ", _EMPHASIS.sub(r"\1", text)).strip()
