"""The public chat templates trl ships, each over the embedded SmolLM2 vocabulary (so they run
offline), on a small sample of the shared corpora:

- token counts equal `apply_chat_template(tokenize=True)` on every row (None where it refuses);
- where trl ships a `*_training` variant with `{% generation %}` markers, Sift's mask under the
  original template equals `return_assistant_tokens_mask` under the training one on every row
  the two render alike;
- every assistant turn's trained tokens end with the template's end-of-turn marker, checked on
  the tokens themselves, and no row is flagged `loss_mask_no_stop`.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from curation.formats import parse_file
from curation.records import Conversation
from curation.render import ChatRenderer, apply_system_policy, to_template_messages
from curation.validate import measure
from tests.conftest import CORPORA

# (template, its end-of-turn marker). Gemma, Llama 3 and Phi-3 know no tools: tool rows are
# refused or flagged, never miscounted.
TEMPLATES = [
    ("qwen2_5", "<|im_end|>"),
    ("qwen3", "<|im_end|>"),
    ("qwen3_instruct_2507", "<|im_end|>"),
    ("gemma", "<end_of_turn>"),
    ("gemma3", "<end_of_turn>"),
    ("llama3", "<|eot_id|>"),
    ("llama3_1", "<|eot_id|>"),
    ("llama3_2", "<|eot_id|>"),
    ("phi3", "<|end|>"),
    ("deepseekv3", "<｜end▁of▁sentence｜>"),
    ("qwen3_5_nothink", "<|im_end|>"),
    ("qwen3_6", "<|im_end|>"),
    ("nemotron_3_nano", "<|im_end|>"),
]

# Training variants whose generation block starts inside what the generation prompt supplies
# (the newline after the role, the assistant header, Qwen3.5's empty reasoning block).
SUPPLIED_BY_PROMPT = {"qwen2_5", "deepseekv3", "qwen3_5_nothink", "qwen3_6", "nemotron_3_nano"}

SAMPLE = [
    ("FastChat/dummy_conversation.json", 8),
    ("LLaMA-Factory/glaive_toolcall_en_demo.json", 8),
    ("openai-cheat-sheet/toy_chat_fine_tuning.jsonl", 4),
    ("openai-cheat-sheet/weather_chat_fine_tuning.jsonl", 1),
    ("LLaMA-Factory/alpaca_zh_demo.json", 2),
    ("axolotl/conversation.json", 1),
]


def _template_dir() -> Path:
    """trl's template folder, found without importing trl (an import costs seconds)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("trl is not installed")
    return Path(spec.submodule_search_locations[0]) / "chat_templates"


@pytest.fixture(scope="module")
def tok() -> Any:
    """One copy of the embedded tokenizer whose template each test sets (a copy per test costs ~0.5 s)."""
    from curation.models import load_tokenizer

    return copy.deepcopy(load_tokenizer())


@pytest.fixture(scope="module")
def sample() -> list[Conversation]:
    if not CORPORA.exists():
        pytest.skip("../shared/corpora is not present")
    out: list[Conversation] = []
    for name, n in SAMPLE:
        convs = [m.conversation for m in parse_file(CORPORA / name).mapped]
        # Spread over the file: FastChat's and glaive's rows grow longer further in.
        step = max(1, len(convs) // n)
        out += convs[::step][:n]
    return out


def _apply(tok: Any, conv: Conversation, policy: str = "keep", **kw: Any) -> Any:
    c = apply_system_policy(conv, policy)
    try:
        return tok.apply_chat_template(
            to_template_messages(c), tools=[dict(t) for t in c.tools] or None, return_dict=False, **kw
        )
    except Exception:
        return None


@pytest.mark.parametrize("name,stop", TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_template_matrix(tok: Any, sample: list[Conversation], name: str, stop: str) -> None:
    folder = _template_dir()
    ttok = tok
    ttok.chat_template = (folder / f"{name}.jinja").read_text()
    # Gemma refuses a system turn: it is validated with the system prompt folded in.
    policy = "fold" if name == "gemma" else "keep"
    renderer = ChatRenderer(ttok, name=name, system_prompt=policy)
    ms = measure(sample, renderer)

    # 1. Token counts equal apply_chat_template.
    want = [_apply(ttok, c, policy, tokenize=True) for c in sample]
    assert [m.tokens for m in ms] == [len(w) if w is not None else None for w in want]
    rendered = sum(m.tokens is not None for m in ms)
    assert rendered >= len(sample) // 2, f"{name} rendered only {rendered} of {len(sample)} rows"

    # 2. Masks equal trl's training template's where it renders the same text.
    training = folder / f"{name}_training.jinja"
    compared = exact = 0
    if training.exists():
        gen = training.read_text()
        u = [{"role": "user", "content": "x"}]
        prompt = ttok.apply_chat_template(u, add_generation_prompt=True, tokenize=False)[
            len(ttok.apply_chat_template(u, tokenize=False)) :
        ]
        for c, m in zip(sample, ms, strict=True):
            if m.tokens is None:
                continue
            if _apply(ttok, c, policy, tokenize=False, chat_template=gen) != _apply(ttok, c, policy, tokenize=False):
                continue
            out = ttok.apply_chat_template(
                to_template_messages(apply_system_policy(c, policy)),
                tools=[dict(t) for t in c.tools] or None,
                tokenize=True,
                return_dict=True,
                return_assistant_tokens_mask=True,
                chat_template=gen,
            )
            mine = [0] * m.tokens
            for s, e in m.spans:
                mine[s:e] = [1] * (e - s)
            theirs = out["assistant_masks"]
            # Some training variants open the block before what the generation prompt already
            # supplies (Qwen2.5's "\n" after the role, DeepSeek's "<｜Assistant｜>"): the model never
            # writes those tokens at inference, so Sift leaves them out. Nothing else may differ.
            tools = [dict(t) for t in c.tools] or None
            text = renderer.render(to_template_messages(apply_system_policy(c, policy)), tools)
            toks = renderer.tokens(text)
            extra: list[str] = []  # runs of tokens only trl trains, as text
            run_start = None
            for k in range(m.tokens + 1):
                only_theirs = k < m.tokens and theirs[k] and not mine[k]
                if only_theirs and run_start is None:
                    run_start = toks[k][2]
                elif not only_theirs and run_start is not None:
                    extra.append(text[run_start : toks[k - 1][3]])
                    run_start = None
            assert not [k for k in range(m.tokens) if mine[k] and not theirs[k]], f"{name}: {c.id}"
            # (A token may straddle the user's last character and the header: "?<｜Assistant｜>".)
            assert all(t.strip() == "" or t in prompt or t[1:] in prompt for t in extra), (name, c.id, extra)
            compared += 1
            exact += mine == theirs
        assert compared > 0
        assert exact == compared or name in SUPPLIED_BY_PROMPT, f"{name}: {exact} of {compared} masks equal"

    # 3. Every trained turn carries its stop token, checked on the tokens.
    for c, m in zip(sample, ms, strict=True):
        if m.tokens is None:
            continue
        assert "loss_mask_no_stop" not in {f.reason for f in m.findings}, (name, c.id, m.findings)
        text = renderer.render(
            to_template_messages(apply_system_policy(c, policy)),
            [dict(t) for t in c.tools] or None,
            template=renderer.template_for([dict(t) for t in c.tools] or None),
        )
        toks = renderer.tokens(text)
        trained_turns = 0
        for s, e in m.spans:
            piece = text[toks[s][2] : toks[e - 1][3]]
            assert stop in piece, f"{name}: a trained span of {c.id} lacks {stop!r}: {piece[-80:]!r}"
            trained_turns += piece.count(stop)
        if m.mask_source != "generation" and not {f.reason for f in m.findings} & {"template_drops_content"}:
            answers = sum(1 for x in apply_system_policy(c, policy).messages if x.role == "assistant")
            assert trained_turns == answers, (name, c.id)
