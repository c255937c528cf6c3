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
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
            shift_labels = labels[:, 1:].reshape(-1)
            loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="sum")
            total += float(loss)
            count += int((shift_labels != IGNORE).sum())
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
    """Greedy answers for each prompt (left-padded batches)."""
    import torch

    device = next(p for p in model.parameters()).device
    old_side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    eos = [tok.eos_token_id]
    try:
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                _check(should_stop)
                chunk = prompts[i : i + batch_size]
                texts = [
                    tok.apply_chat_template(
                        p.messages, tools=p.tools or None, tokenize=False, add_generation_prompt=True
                    )
                    for p in chunk
                ]
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=eos,
                )
                for row in gen[:, enc["input_ids"].shape[1] :]:
                    out.append(tok.decode(row, skip_special_tokens=True).strip())
    finally:
        tok.padding_side = old_side
    return out


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
