"""Evaluation on the frozen eval split: loss and perplexity, then generation with the base model
(adapter off) and the tuned one (adapter on), scored against the reference answers.

`should_stop` is polled between batches so a cancel during evaluation stops promptly too.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

from trainer.data import IGNORE, Example, Prompt
from trainer.metrics import aggregate, score


class Stopped(Exception):
    """Evaluation was asked to stop (cancel)."""


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Stopped()


GENERATE_LOGITS_BUDGET = 6 * 1024**3  # bytes of prefill logits per generation batch
LOGITS_BUDGET = 2 * 1024**3  # bytes of logits (bf16 and their fp32 copy) per forward in eval_loss


def _logit_bytes(model: Any) -> int:
    """Bytes one position's logits take while scored: vocab x (bf16 copy + fp32 copy)."""
    return int(getattr(getattr(model, "config", None), "vocab_size", 0) or 50_000) * 6


def eval_loss(
    model: Any,
    examples: list[Example],
    pad_id: int,
    *,
    batch_size: int = 8,
    should_stop: Callable[[], bool] | None = None,
) -> float | None:
    """Mean next-token loss over the trained (assistant) tokens of the eval examples."""
    import torch

    if not examples:
        return None
    device = next(p for p in model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            _check(should_stop)
            chunk = examples[i : i + batch_size]
            width = max(len(e.input_ids) for e in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for j, e in enumerate(chunk):
                n = len(e.input_ids)
                ids[j, :n] = torch.tensor(e.input_ids)
                labels[j, :n] = torch.tensor(e.labels)
                mask[j, :n] = 1
            # The logits of a wide batch are rows x width x vocab floats (100 x 512 x 49k = 10 GB):
            # forward at most LOGITS_BUDGET bytes of them at a time.
            rows = max(1, LOGITS_BUDGET // (width * _logit_bytes(model)))
            for k in range(0, len(chunk), rows):
                sub_ids, sub_labels, sub_mask = (t[k : k + rows].to(device) for t in (ids, labels, mask))
                logits = model(input_ids=sub_ids, attention_mask=sub_mask).logits.float()
                shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
                shift_labels = sub_labels[:, 1:].reshape(-1)
                loss = torch.nn.functional.cross_entropy(
                    shift_logits, shift_labels, ignore_index=IGNORE, reduction="sum"
                )
                total += float(loss)
                count += int((shift_labels != IGNORE).sum())
                del logits, shift_logits
    return total / count if count else None


def generate(
    model: Any,
    tok: Any,
    prompts: list[Prompt],
    *,
    max_new_tokens: int,
    batch_size: int,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Greedy answers for each prompt (left-padded batches, in the prompts' order).

    Batches are built over the prompts sorted by length, at most `batch_size` rows and at most
    GENERATE_LOGITS_BUDGET bytes of prefill logits (rows x longest prompt x vocab): one overlong
    prompt (a pasted 4,000-token log) then shares its batch with a few, not a hundred, others."""
    import torch

    device = next(p for p in model.parameters()).device
    old_side = tok.padding_side
    tok.padding_side = "left"
    out: list[str | None] = [None] * len(prompts)
    eos = [tok.eos_token_id]
    max_tokens = max(1, GENERATE_LOGITS_BUDGET // _logit_bytes(model))
    try:
        texts = [
            tok.apply_chat_template(p.messages, tools=p.tools or None, tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(prompts)), key=lambda k: lengths[k])
        batches: list[list[int]] = []
        for k in order:
            cur = batches[-1] if batches else None
            if cur and len(cur) < batch_size and (len(cur) + 1) * (lengths[k] + max_new_tokens) <= max_tokens:
                cur.append(k)
            else:
                batches.append([k])
        with torch.no_grad():
            for idx in batches:
                _check(should_stop)
                enc = tok([texts[k] for k in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = enc.to(device)
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=eos,
                )
                for k, row in zip(idx, gen[:, enc["input_ids"].shape[1] :], strict=True):
                    out[k] = tok.decode(row, skip_special_tokens=True).strip()
                del gen, enc
    finally:
        tok.padding_side = old_side
    return [o or "" for o in out]


def judge_pairwise(
    prompts: list[Prompt],
    base: list[str],
    tuned: list[str],
    *,
    base_url: str,
    model: str,
    api_key: str | None,
    seed: int,
) -> dict[str, Any]:
    """Win rate of tuned over base by an LLM judge behind an OpenAI-compatible endpoint.

    The two answers are shown in a random order per item (seeded) to cancel position bias.
    """
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "none")
    rng = random.Random(seed)
    wins = losses = ties = errors = 0
    for p, b, t in zip(prompts, base, tuned, strict=True):
        flip = rng.random() < 0.5
        first, second = (t, b) if flip else (b, t)
        question = "\n".join(f"{m['role']}: {m['content']}" for m in p.messages)
        ask = (
            "Compare two assistant answers to the conversation below against the reference answer. "
            "Reply with one letter: A if answer A is better, B if answer B is better, T for a tie.\n\n"
            f"Conversation:\n{question}\n\nReference:\n{p.reference}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"
        )
        try:
            r = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": ask}], max_tokens=2, temperature=0
            )
            verdict = (r.choices[0].message.content or "").strip().upper()[:1]
        except Exception:
            errors += 1
            continue
        if verdict == "T":
            ties += 1
        elif verdict in ("A", "B"):
            tuned_won = (verdict == "A") == flip
            wins += tuned_won
            losses += not tuned_won
        else:
            errors += 1
    judged = wins + losses + ties
    return {
        "model": model,
        "judged": judged,
        "tuned_wins": wins,
        "base_wins": losses,
        "ties": ties,
        "errors": errors,
        "win_rate": round((wins + 0.5 * ties) / judged, 4) if judged else None,
    }


def summarize(
    prompts: list[Prompt], base: list[str] | None, tuned: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Aggregate metrics for base and tuned, and the per-example rows of samples.jsonl."""
    rows: list[dict[str, Any]] = []
    base_scores: list[dict[str, float]] = []
    tuned_scores: list[dict[str, float]] = []
    for i, p in enumerate(prompts):
        ts = score(tuned[i], p.reference)
        tuned_scores.append(ts)
        row: dict[str, Any] = {
            "index": i,
            "prompt": p.messages,
            "reference": p.reference,
            "tuned": tuned[i],
            "tuned_scores": ts,
        }
        if base is not None:
            bs = score(base[i], p.reference)
            base_scores.append(bs)
            row["base"] = base[i]
            row["base_scores"] = bs
        rows.append(row)
    out: dict[str, Any] = {"tuned": aggregate(tuned_scores)}
    if base is not None:
        out["base"] = aggregate(base_scores)
    return out, rows


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return round(math.exp(min(loss, 50.0)), 4)


def dumps_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False) + "\n"


def summarize_tool_calls(
    prompts: list[Prompt], base: list[str] | None, tuned: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Tool-call metrics (function name exact, arguments JSON-equal, per-argument accuracy) for
    base and tuned over the tool-call eval items, and their per-item rows."""
    from trainer.metrics import tool_call_scores

    rows: list[dict[str, Any]] = []
    sides: dict[str, list[dict[str, float]]] = {"tuned": [], "base": []}
    for i, p in enumerate(prompts):
        ref = list(p.calls)
        row: dict[str, Any] = {"index": i, "prompt": p.messages, "reference_calls": ref, "tuned": tuned[i]}
        row["tuned_scores"] = tool_call_scores(tuned[i], ref)
        sides["tuned"].append(row["tuned_scores"])
        if base is not None:
            row["base"] = base[i]
            row["base_scores"] = tool_call_scores(base[i], ref)
            sides["base"].append(row["base_scores"])
        rows.append(row)
    out: dict[str, Any] = {"n": len(prompts), "tuned": aggregate(sides["tuned"])}
    if base is not None:
        out["base"] = aggregate(sides["base"])
    return out, rows
