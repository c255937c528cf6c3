"""Loss-mask methods on templates whose history renders differently (Qwen3), measured on the corpora.

For every assistant turn of FastChat (500 rows) and glaive EN (300 rows, tool calls) under trl's
public templates over the embedded SmolLM2 vocabulary:

- `turn text` (Sift before issue 18): prefix renders where `messages[:i+1]` is a prefix of the whole
  render, else the turn's own text; counts trained turns without their end-of-turn token and
  tool-call turns with no loss at all;
- `prefix+stop` (Sift now): the same, but a re-rendered turn is anchored from the generation
  prompt to its end-of-turn marker; checked on the tokens;
- `per-turn`: every assistant turn trained as the last turn of its own prefix (what the model
  sees at inference): exact, but tokens to train grow with the number of turns;
- `training variant`: trl's `qwen3_training.jinja` (always renders the reasoning block): rows
  whose render then differs from `apply_chat_template` with the model's own template.

Run: `.venv/bin/python bench/run.py bench_masks`.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curation.formats import parse_file
from curation.render import ChatRenderer, render_conversation, to_template_messages
from curation.validate import measure

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"
FILES = {"FastChat": "FastChat/dummy_conversation.json", "glaive EN": "LLaMA-Factory/glaive_toolcall_en_demo.json"}


def _templates() -> Path:
    spec = importlib.util.find_spec("trl")
    assert spec and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "chat_templates"


def _renderer(tok: Any, name: str) -> ChatRenderer:
    t = copy.deepcopy(tok)
    t.chat_template = (_templates() / f"{name}.jinja").read_text()
    return ChatRenderer(t, name=name)


def _old_method(r: ChatRenderer, convs: list[Any]) -> tuple[int, int, int]:
    """(assistant turns, trained turns without their stop, tool-call turns with no loss) under the
    pre-issue-18 rule: prefix span where the prefix renders alike, else the turn's own text."""
    turns = no_stop = no_loss = 0
    for c in convs:
        msgs = to_template_messages(c)
        tools = [dict(t) for t in c.tools] or None
        tmpl = r.template_for(tools)
        try:
            full = r.render(msgs, tools, template=tmpl)
        except Exception:
            continue
        for i, m in enumerate(c.messages):
            if m.role != "assistant":
                continue
            turns += 1
            upto = r.render(msgs[: i + 1], tools, template=tmpl)
            if full.startswith(upto):
                continue
            if m.text.strip():
                no_stop += 1  # the fallback trained the text alone
            else:
                no_loss += 1  # a tool-call turn without text: nothing trained
    return turns, no_stop, no_loss


def _new_method(r: ChatRenderer, convs: list[Any], stop: str) -> tuple[int, int, int, float]:
    """(trained spans, spans whose tokens lack the stop, rows flagged loss_mask_*, seconds)."""
    t0 = time.perf_counter()
    ms = measure(convs, r)
    dt = time.perf_counter() - t0
    spans = lacking = flagged = 0
    for c, m in zip(convs, ms, strict=True):
        if m.tokens is None:
            continue
        rr = render_conversation(r, c)
        text = rr.text or ""
        toks = r.tokens(text)
        for s, e in m.spans:
            spans += 1
            lacking += stop not in text[toks[s][2] : toks[e - 1][3]]
        flagged += any(f.reason.startswith("loss_mask") for f in m.findings)
    return spans, lacking, flagged, dt


def _per_turn_tokens(r: ChatRenderer, convs: list[Any]) -> tuple[int, int]:
    """(tokens of the whole renders, tokens when every answer is its own row as the last turn)."""
    whole = expanded = 0
    for c in convs:
        msgs = to_template_messages(c)
        tools = [dict(t) for t in c.tools] or None
        tmpl = r.template_for(tools)
        try:
            texts = [r.render(msgs, tools, template=tmpl)]
        except Exception:
            continue
        texts += [
            r.render(msgs[: i + 1], tools, template=tmpl) for i, m in enumerate(c.messages) if m.role == "assistant"
        ]
        counts = [e.n for e in r.encode(texts)]
        whole += counts[0]
        expanded += sum(counts[1:])
    return whole, expanded


def _training_variant_rows(tok: Any, r: ChatRenderer, convs: list[Any]) -> int:
    t = _renderer(tok, "qwen3_training")
    differ = 0
    for c in convs:
        msgs = to_template_messages(c)
        tools = [dict(x) for x in c.tools] or None
        try:
            differ += r.render(msgs, tools, template=r.template_for(tools)) != t.render(
                msgs, tools, template=t.template_for(tools)
            )
        except Exception:
            pass
    return differ


def main() -> None:
    from curation.models import load_tokenizer

    tok = load_tokenizer()
    convs = {k: [m.conversation for m in parse_file(CORPORA / v).mapped] for k, v in FILES.items()}
    print(
        "| template | corpus | rows | answers | turn text: no stop / no loss | prefix+stop: spans lacking stop | "
        "rows flagged loss_mask_* | measure s | per-turn tokens ÷ whole | training variant: rows rendered differently |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, stop in (
        ("qwen3", "<|im_end|>"),
        ("qwen2_5", "<|im_end|>"),
        ("llama3_1", "<|eot_id|>"),
        ("gemma3", "<end_of_turn>"),
    ):
        r = _renderer(tok, name)
        for corpus, cs in convs.items():
            turns, no_stop, no_loss = _old_method(r, cs)
            spans, lacking, flagged, dt = _new_method(r, cs, stop)
            whole, expanded = _per_turn_tokens(r, cs)
            variant = _training_variant_rows(tok, r, cs) if name == "qwen3" else "—"
            print(
                f"| {name} | {corpus} | {len(cs)} | {turns} | {no_stop} / {no_loss} | {lacking} of {spans} | {flagged} | "
                f"{dt:.2f} | {expanded / whole if whole else 0:.2f} | {variant} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
