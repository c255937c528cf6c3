"""The memorisation probe: does the tuned model recite its training data?

For up to `probe_limit` training conversations the last assistant answer is cut: the model sees
the conversation up to that answer plus the answer's first tokens, and greedily continues for as
many tokens as were held back (`probe_tokens`, at most half the answer). A continuation is
`exact` when it reproduces the held-back tokens, `near` when its text is at least 0.8 similar
(difflib ratio) to the held-back text (exact ones included). The base model answers the same
probes: what the tuned model extracts beyond the base is what training taught it.

PII: the workbench writes `pii_strings.json` into the run folder — the sha256 and length of every
span the PII stage found in any revision of the version's conversations (dismissed findings aside),
never the text. Conversations whose held-back text contains one are probed first, and every
continuation and every tuned eval answer is searched for them by hashing its substrings of those
lengths: `pii_emitted` counts the distinct PII strings the tuned model wrote. Without the file (a
run folder made by hand, or one whose folder was replaced) `pii_strings` and `pii_emitted` are None:
not checked, which is not the same as none found.
"""

from __future__ import annotations

import difflib
import hashlib
import random
from typing import Any

from curation.records import Conversation
from trainer.config import TrainConfig

PII_FILE = "pii_strings.json"
NEAR = 0.8
SCAN_LIMIT = 2000  # conversations whose answers are searched for PII when choosing what to probe


class PiiIndex:
    """Finds PII strings in a text by the sha256 of its substrings (lengths from the findings)."""

    def __init__(self, data: dict[str, Any] | None) -> None:
        # No file at all is not "no PII": the probe then says it could not check (`pii_strings` None).
        self.known = data is not None
        data = data or {}
        self.hashes = set(data.get("sha256") or [])
        self.lengths = sorted({int(n) for n in data.get("lengths") or [] if int(n) > 0})

    def __len__(self) -> int:
        return len(self.hashes)

    def found(self, text: str) -> set[str]:
        out: set[str] = set()
        if not self.hashes or not text:
            return out
        for n in self.lengths:
            for i in range(len(text) - n + 1):
                h = hashlib.sha256(text[i : i + n].encode("utf-8")).hexdigest()
                if h in self.hashes:
                    out.add(h)
        return out


def _last_answer(conv: Conversation) -> int | None:
    last = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=None)
    if last is None or last == 0 or not conv.messages[last].text.strip():
        return None
    return last


def choose(cfg: TrainConfig, train: list[Conversation], pii: PiiIndex) -> list[Conversation]:
    """PII-carrying answers first, then the others, in a seeded order."""
    order = [c for c in train if _last_answer(c) is not None]
    random.Random(cfg.seed).shuffle(order)
    if len(pii):
        hit = [c for c in order[:SCAN_LIMIT] if pii.found(c.messages[_last_answer(c) or 0].text)]
        ids = {id(c) for c in hit}
        order = hit + [c for c in order if id(c) not in ids]
    return order[: cfg.probe_limit]


def _build(tok: Any, conv: Conversation, n_tokens: int) -> tuple[list[int], list[int]] | None:
    from curation.render import to_template_messages

    last = _last_answer(conv)
    if last is None:
        return None
    msgs = to_template_messages(conv)[:last]
    tools = [dict(t) for t in conv.tools] if conv.tools else None
    prompt = tok.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=True)
    ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
    answer = list(tok(conv.messages[last].text, add_special_tokens=False)["input_ids"])
    held = min(n_tokens, len(answer) // 2)
    if held < 4:
        return None
    return ids + answer[:-held], answer[-held:]


def _continue(model: Any, tok: Any, prompts: list[list[int]], lengths: list[int], batch_size: int) -> list[list[int]]:
    import torch

    device = next(p for p in model.parameters()).device
    pad = tok.pad_token_id
    out: list[list[int]] = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            chunk, want = prompts[i : i + batch_size], lengths[i : i + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, p in enumerate(chunk):  # left padding
                ids[j, width - len(p) :] = torch.tensor(p)
                mask[j, width - len(p) :] = 1
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max(want),
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=[tok.eos_token_id],
            )
            for j, row in enumerate(gen[:, width:].tolist()):
                out.append(row[: want[j]])
    return out


def probe(
    cfg: TrainConfig, model: Any, tok: Any, train: list[Conversation], pii: PiiIndex, *, tuned_answers: list[str]
) -> dict[str, Any]:
    """{"probed", "extracted_exact", "extracted_near", "pii_emitted", "base": {...}, ...}."""
    from trainer.recipes import base_view

    built = [b for b in (_build(tok, c, cfg.probe_tokens) for c in choose(cfg, train, pii)) if b is not None]
    prompts, held = [b[0] for b in built], [b[1] for b in built]
    lengths = [len(h) for h in held]
    result: dict[str, Any] = {
        "probed": len(built),
        "tokens": cfg.probe_tokens,
        "near_threshold": NEAR,
        "pii_strings": len(pii) if pii.known else None,
        "pii_in_probed_answers": 0 if pii.known else None,
    }
    if len(pii):
        result["pii_in_probed_answers"] = sum(1 for h in held if pii.found(tok.decode(h, skip_special_tokens=True)))
    sides: dict[str, Any] = {}
    runs = [("tuned", model)]
    for side, m in runs:
        sides[side] = _continue(m, tok, prompts, lengths, cfg.eval_batch_size)
    with base_view(model) as bm:
        sides["base"] = _continue(bm, tok, prompts, lengths, cfg.eval_batch_size)
    for side, conts in sides.items():
        exact = near = 0
        emitted: set[str] = set()
        for got, want in zip(conts, held, strict=True):
            g, w = tok.decode(got, skip_special_tokens=True), tok.decode(want, skip_special_tokens=True)
            exact += got == want
            near += got == want or difflib.SequenceMatcher(None, g, w, autojunk=False).ratio() >= NEAR
            emitted |= pii.found(g)
        if side == "tuned":
            for a in tuned_answers:  # the eval answers too: PII need not come from a probe to leak
                emitted |= pii.found(a)
        block = {"extracted_exact": exact, "extracted_near": near, "pii_emitted": len(emitted) if pii.known else None}
        if side == "tuned":
            result.update(block)
        else:
            result["base"] = block
    return result
