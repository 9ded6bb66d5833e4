"""Prompts with verifiable instructions: an everyday request plus one or two instructions (labeler/labels/instructions.py)
with random parameters, so what a good answer looks like changes from prompt to prompt (fewer than 15 words here,
at least 40 there, all capitals, three bullet points...). Topics and parameter values are split between train and
held-out, so a held-out prompt asks about a topic, and with values, that training never saw.

    prompts = generate_prompts(count=64, split="train", seed=0)
    prompts[0].messages       # [{"role": "user", "content": "Describe a rainy day. Answer in fewer than 25 words."}]
    prompts[0].instructions   # [Instruction("max_words", {"n": 25})]
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlmodel import Session, select

from labeler.labels.instructions import KINDS, Instruction, compatible
from labeler.store.store import messages_hash
from labeler.store.tables import Prompt

PromptSplit = Literal["train", "heldout"]

TOPICS: dict[PromptSplit, tuple[str, ...]] = {
    "train": (
        "a rainy day",
        "cooking pasta",
        "learning to swim",
        "a city park",
        "keeping houseplants alive",
        "the first day at a new job",
        "riding a bicycle to work",
        "a birthday party",
        "making coffee",
        "saving money each month",
        "a visit to the dentist",
        "walking a dog",
        "a library",
        "packing for a trip",
        "a farmers market",
        "cleaning the kitchen",
        "writing a thank-you note",
        "a thunderstorm",
        "choosing running shoes",
        "a board game night",
        "growing tomatoes",
        "a train journey",
        "baking bread",
        "a quiet morning",
        "fixing a flat tire",
        "visiting grandparents",
        "a snowy street",
        "learning a new language",
        "a picnic",
        "the night sky",
    ),
    "heldout": (
        "a mountain hike",
        "moving to a new flat",
        "a street market at night",
        "repairing a chair",
        "a beach in winter",
        "starting a vegetable garden",
        "a museum visit",
        "brewing tea",
        "a long bus ride",
        "teaching a child to read",
    ),
}

TEMPLATES = (
    "Write a short note about {topic}.",
    "Describe {topic}.",
    "Give some advice about {topic}.",
    "Tell a friend about {topic}.",
    "Explain what matters most about {topic}.",
)

# Each parameter's values, split: held-out prompts use values training never saw.
VALUES: dict[str, dict[str, dict[PromptSplit, tuple[Any, ...]]]] = {
    "keyword": {
        "word": {
            "train": ("simple", "today", "careful", "friend", "light", "water"),
            "heldout": ("patience", "morning", "green"),
        }
    },
    "max_words": {"n": {"train": (10, 15, 25), "heldout": (12, 20)}},
    "min_words": {"n": {"train": (25, 40, 50), "heldout": (30, 45)}},
    "end_phrase": {
        "phrase": {
            "train": ("Is there anything else I can help with?", "That is all."),
            "heldout": ("Have a nice day.",),
        }
    },
    "start_word": {"word": {"train": ("Well", "First", "Honestly"), "heldout": ("Sure", "Today")}},
    "bullets": {"n": {"train": (2, 4), "heldout": (3,)}},
    "postscript": {"marker": {"train": ("P.S.",), "heldout": ("P.P.S.",)}},
}


@dataclass(frozen=True)
class InstructionPrompt:
    messages: list[dict]
    instructions: list[Instruction]
    topic: str
    split: PromptSplit
    # next user turns, each asking the answer before it again under one instruction ({"content", "instructions"})
    follow_ups: list[dict] | None = None

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def stored_instructions(data: list[dict] | None) -> list[Instruction]:
    """A prompt row's instructions (`Prompt.instructions`) as Instruction objects; [] for a plain prompt."""
    return [Instruction.from_dict(d) for d in data or []]


def add_instruction_prompts(*, session: Session, prompts: Sequence[InstructionPrompt], source: str) -> int:
    """Store the prompts with their instructions (held-out ones in the eval split); duplicates are skipped.
    One transaction; returns how many were new."""
    existing = set(session.exec(select(Prompt.content_hash)).all())
    added = 0
    for prompt in prompts:
        digest = messages_hash(prompt.messages)
        if digest in existing:
            continue
        existing.add(digest)
        session.add(
            Prompt(
                messages=prompt.messages,
                content_hash=digest,
                source=source,
                split="eval" if prompt.split == "heldout" else "train",
                instructions=[rule.to_dict() for rule in prompt.instructions],
                follow_ups=prompt.follow_ups,
            )
        )
        added += 1
    session.commit()
    return added


def random_instruction(kind: str, split: PromptSplit, rng: random.Random) -> Instruction:
    params = {name: rng.choice(VALUES[kind][name][split]) for name in KINDS[kind].params}
    return Instruction(kind, params)


# What a next turn asks of the answer before it: say it again, under one instruction (simulated follow-ups).
FOLLOW_UP_KINDS = ("max_words", "capitals", "lowercase", "start_word", "end_phrase", "quotation", "keyword")


def follow_up(split: PromptSplit, rng: random.Random) -> dict:
    """One next user turn that depends on the answer before it: "Now say that again." plus an instruction."""
    rule = random_instruction(rng.choice(FOLLOW_UP_KINDS), split, rng)
    return {"content": f"Now say that again. {rule.describe()}", "instructions": [rule.to_dict()]}


def generate_prompts(
    *, count: int, split: PromptSplit, seed: int = 0, max_instructions: int = 2, follow_ups: int = 0
) -> list[InstructionPrompt]:
    """`count` distinct prompts of one split, each with 1 to `max_instructions` compatible instructions and
    `follow_ups` next turns (`follow_up`), for conversations."""
    rng = random.Random(f"{seed}-{split}")
    asks_again = random.Random(f"{seed}-{split}-follow-ups")  # its own draws: the first turns never change
    seen: set[str] = set()
    prompts: list[InstructionPrompt] = []
    for _ in range(count * 50):
        if len(prompts) == count:
            break
        topic = rng.choice(TOPICS[split])
        kinds = rng.sample(sorted(KINDS), rng.randint(1, max_instructions))
        if not compatible(kinds):
            continue
        rules = [random_instruction(kind, split, rng) for kind in kinds]
        text = " ".join([rng.choice(TEMPLATES).format(topic=topic), *(r.describe() for r in rules)])
        if text in seen:
            continue
        seen.add(text)
        more = [follow_up(split, asks_again) for _ in range(follow_ups)] or None
        prompts.append(InstructionPrompt([{"role": "user", "content": text}], rules, topic, split, more))
    if len(prompts) < count:
        raise ValueError(f"could only make {len(prompts)} distinct {split} prompts, not {count}")
    return prompts
