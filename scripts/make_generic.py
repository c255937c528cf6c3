"""Regenerate datasets/generic/: the generic instruction set of the forgetting guard.

General prompts written for Sift (no third-party text), answered greedily by the embedded base
model, SmolLM2-135M-Instruct: its own answers, so mixing them into a fine-tune pulls the model
towards its base behaviour (self-distillation), and scoring them shows what a fine-tune forgot.
Written as an export folder (manifest.json + train.jsonl + eval.jsonl) that `mix_version` and
`generic_eval` accept as `builtin:generic`.

    python scripts/make_generic.py [--out datasets/generic] [--max-new-tokens 96]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "What is the capital of France?",
    "Explain what a prime number is in one sentence.",
    "Give me three tips for staying focused while studying.",
    "Translate 'good morning' into Spanish.",
    "What is the boiling point of water at sea level in Celsius?",
    "Write a haiku about autumn leaves.",
    "Summarise the water cycle in two sentences.",
    "What does a CPU do in a computer?",
    "List four primary colours used in painting.",
    "How many days are there in a leap year?",
    "Suggest a name for a friendly robot.",
    "What is photosynthesis?",
    "Give an example of a renewable energy source.",
    "Write a short thank-you note to a colleague.",
    "What is the difference between weather and climate?",
    "Explain what a noun is to a child.",
    "What is 12 multiplied by 8?",
    "Recommend a healthy breakfast.",
    "Why is the sky blue?",
    "Describe a cat in one sentence.",
    "What are the three states of matter?",
    "Give me a synonym for 'happy'.",
    "How do I boil an egg?",
    "What is the largest planet in our solar system?",
    "Write one sentence encouraging someone before an exam.",
    "What is gravity?",
    "Name two musical instruments with strings.",
    "Explain what a password manager is.",
    "What should I pack for a day at the beach?",
    "What is the square root of 81?",
    "Tell me a fun fact about octopuses.",
    "How can I save water at home?",
    "What is the opposite of 'ancient'?",
    "Explain what recycling means.",
    "Write a two-line poem about the sea.",
    "What is a verb? Give an example.",
    "How many continents are there?",
    "Give a tip for writing a clear e-mail.",
    "What does a thermometer measure?",
    "Describe the taste of a lemon.",
]
N_EVAL = 8


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "datasets" / "generic")
    p.add_argument("--max-new-tokens", type=int, default=96)
    a = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curation.models import resolve_model
    from curation.records import Conversation, Message
    from trainer import evaluate as ev
    from trainer.data import Prompt
    from trainer.manifest import write_export

    torch.set_num_threads(1)  # two spinning threads on a busy 2-core box run far slower than one
    path = resolve_model()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts = [Prompt([{"role": "user", "content": q}], [], "") for q in PROMPTS]
    answers = ev.generate(model, tok, prompts, max_new_tokens=a.max_new_tokens, batch_size=8)
    convs = [
        Conversation(messages=(Message("user", q), Message("assistant", ans)))
        for q, ans in zip(PROMPTS, answers, strict=True)
        if ans.strip()
    ]
    extra = {
        "kind": "generic",
        "source": "prompts written for Sift; answers by SmolLM2-135M-Instruct (greedy, "
        f"max_new_tokens {a.max_new_tokens}): the base model's own behaviour",
        "licences": {"prompts": "same as Sift", "answers": "Apache-2.0 (SmolLM2-135M-Instruct output)"},
    }
    write_export(a.out, convs[:-N_EVAL], convs[-N_EVAL:], version="generic", extra=extra)
    print(f"wrote {len(convs) - N_EVAL} train + {N_EVAL} eval conversations to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
