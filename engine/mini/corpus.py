"""A seeded generator of TinyStories-like stories for the embedded default.

Stories follow a handful of plot shapes (wanting something out of reach, a lost toy,
sharing food, helping an animal, a quarrel and making up, a walk in the rain). Each
shape is a fixed order of sentence templates; slots (names, places, objects, food,
animals, feelings) are bound once per story, so later sentences follow from earlier
ones and a next-sentence predictor has something real to learn. The vocabulary and
the number of distinct sentences stay small on purpose: a model of a few million
parameters must reconstruct every sentence exactly.

The Lily story of ``reference/lily-story.md`` is one story of the first shape. It is
held out as a whole, but every one of its sentences, and the init sentences of the
shipped queue, occur in training stories (see ``ANCHOR_STORIES``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_SEED = 1234
DEFAULT_NUM_STORIES = 12_000
HELDOUT_FRACTION = 0.05

LILY_STORY: tuple[str, ...] = (
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "One day, she saw a big tree in the sky.",
    "She wanted to climb it, but it was too high.",
    "Lily asked her mom to help her climb the tree.",
    "Her mom said, \"No, you can't climb the tree. It's too high.\"",
    "Lily was sad because she wanted to climb the tree.",
    "Later that day, Lily's mom told her that she could climb the tree.",
)
INIT_SENTENCES: tuple[str, ...] = ("I like cheese.", "There was a boy named Tom.")
REFERENCE_SENTENCES: tuple[str, ...] = LILY_STORY + INIT_SENTENCES

GIRLS = ("Lily", "Sue", "Mia", "Anna", "Lucy", "Emma", "Zoe", "Amy", "Kim")
BOYS = ("Tom", "Ben", "Max", "Sam", "Tim", "Jack", "Leo", "Joe", "Bob")
HELPERS = ("mom", "dad", "grandma", "grandpa")
PLACES = ("park", "garden", "yard", "forest", "sky")
PLAY_WHERE = ("outside", "in the park", "in the garden", "at home")
PLAYTHINGS = ("toys", "ball", "dog", "friends", "blocks", "doll")
# thing -> (verb, adjectives that make it out of reach)
REACHABLE = {
    "tree": ("climb", ("high", "big")),
    "kite": ("catch", ("high", "far")),
    "box": ("open", ("big", "heavy")),
    "rock": ("lift", ("big", "heavy")),
    "hill": ("climb", ("high", "far")),
}
TOYS = ("ball", "doll", "hat", "kite", "teddy bear", "toy car")
COLORS = ("red", "blue", "yellow", "green", "pink")
HIDING = ("bed", "tree", "bush", "table", "chair")
FOODS = ("cheese", "cake", "bread", "soup", "pie", "candy", "pizza", "jam")
ANIMALS = ("cat", "dog", "bird", "bunny", "duck", "frog")
# animal trouble -> what the child does about it
TROUBLES = {
    "hungry": "{Sub} gave the {animal} some {food}.",
    "cold": "{Sub} put a warm blanket on the {animal}.",
    "scared": "{Sub} sang a soft song to the {animal}.",
    "lost": "{Sub} helped the {animal} find its home.",
}
FEELINGS = ("happy", "tired", "warm", "safe")
INTRO_ADJECTIVES = ("little", "happy", "kind", "brave", "small")


@dataclass(frozen=True)
class Story:
    shape: str
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class Corpus:
    seed: int
    train: tuple[Story, ...]
    heldout: tuple[Story, ...]

    def train_sentences(self) -> list[str]:
        """Distinct training sentences, in first-seen order."""
        return _distinct(s for story in self.train for s in story.sentences)

    def heldout_sentences(self) -> list[str]:
        return _distinct(s for story in self.heldout for s in story.sentences)

    def all_sentences(self) -> list[str]:
        return _distinct(s for story in self.train + self.heldout for s in story.sentences)

    def vocabulary(self) -> set[str]:
        words: set[str] = set()
        for sentence in self.all_sentences():
            words.update(w.strip(".,!?\"'").lower() for w in sentence.split())
        return words - {""}


def _distinct(items) -> list[str]:
    return list(dict.fromkeys(items))


class _Slots(dict):
    """Template slots; capitalised variants are derived on lookup."""

    def __missing__(self, key: str) -> str:
        lower = key[0].lower() + key[1:]
        if lower != key and lower in self:
            value = self[lower]
            return value[0].upper() + value[1:]
        raise KeyError(key)


def _character(rng: random.Random, avoid: str | None = None) -> dict[str, str]:
    girl = rng.random() < 0.5
    names = [n for n in (GIRLS if girl else BOYS) if n != avoid]
    return {
        "name": rng.choice(names),
        "kind": "girl" if girl else "boy",
        "sub": "she" if girl else "he",
        "obj": "her" if girl else "him",
        "poss": "her" if girl else "his",
    }


def _intro(rng: random.Random, slots: _Slots, preferred_adj: str) -> str:
    # Each shape leans on one adjective so the first sentence hints at the plot.
    roll = rng.random()
    if roll < 0.55:
        adj = preferred_adj
    elif roll < 0.8:
        adj = rng.choice(INTRO_ADJECTIVES)
    else:
        return "There was a {kind} named {name}.".format_map(slots)
    return f"Once upon a time, there was a {adj} {{kind}} named {{name}}.".format_map(slots)


# A shape: (intro adjective, [(template, droppable)], slot filler).
Template = tuple[str, bool]


def _reach_slots(rng: random.Random, slots: _Slots) -> None:
    thing = rng.choice(tuple(REACHABLE))
    verb, adjs = REACHABLE[thing]
    slots.update(
        thing=thing,
        verb=verb,
        adj=rng.choice(adjs),
        helper=rng.choice(HELPERS),
        where=rng.choice(PLAY_WHERE),
        plaything=rng.choice(PLAYTHINGS),
        place=rng.choice(PLACES),
    )


REACH: list[Template] = [
    ("{Sub} loved to play {where} with {poss} {plaything}.", False),
    ("One day, {sub} saw a big {thing} in the {place}.", False),
    ("{Sub} wanted to {verb} it, but it was too {adj}.", False),
    ("{Name} asked {poss} {helper} to help {obj} {verb} the {thing}.", False),
    ("{Poss} {helper} said, \"No, you can't {verb} the {thing}. It's too {adj}.\"", True),
    ("{Name} was sad because {sub} wanted to {verb} the {thing}.", True),
    ("Later that day, {name}'s {helper} told {obj} that {sub} could {verb} the {thing}.", True),
    ('{Name} was very happy and said, "Thank you!"', True),
]


def _lost_slots(rng: random.Random, slots: _Slots) -> None:
    friend = _character(rng, avoid=slots["name"])
    slots.update(
        toy=rng.choice(TOYS),
        color=rng.choice(COLORS),
        place=rng.choice(PLACES[:4]),
        hide=rng.choice(HIDING),
        friend=friend["name"],
    )


LOST: list[Template] = [
    ("{Sub} had a {color} {toy} that {sub} loved very much.", False),
    ("One day, {sub} lost {poss} {toy} in the {place}.", False),
    ("{Sub} looked everywhere, but {sub} could not find it.", True),
    ("{Name} was sad and started to cry.", True),
    ("Then {poss} friend {friend} came to help.", False),
    ("{Friend} found the {color} {toy} under a {hide}.", False),
    ('{Name} was happy and said, "Thank you, {friend}!"', True),
]


def _share_slots(rng: random.Random, slots: _Slots) -> None:
    slots.update(
        food=rng.choice(FOODS),
        helper=rng.choice(HELPERS),
        place=rng.choice(PLACES[:4]),
        friend=_character(rng)["name"],
    )


SHARE: list[Template] = [
    ("Every morning, my {helper} gives me {food}.", True),
    ("Today, I want to share my {food} with {friend}.", False),
    ("{Friend} is my best friend.", True),
    ("We sit in the {place} and eat together.", False),
    ('{Friend} says, "This {food} is yummy!"', True),
    ("I am happy when I share with my friends.", True),
]


def _animal_slots(rng: random.Random, slots: _Slots) -> None:
    trouble = rng.choice(tuple(TROUBLES))
    slots.update(
        animal=rng.choice(ANIMALS),
        trouble=trouble,
        food=rng.choice(FOODS),
        helper=rng.choice(HELPERS),
        place=rng.choice(PLACES[:4]),
    )
    slots["fix"] = TROUBLES[trouble].format_map(slots)


ANIMAL: list[Template] = [
    ("One day, {sub} went to the {place} with {poss} {helper}.", True),
    ("There, {sub} found a little {animal} that was {trouble}.", False),
    ("{Name} wanted to help the {animal}.", True),
    ("{fix}", False),
    ("Soon the {animal} felt much better.", True),
    ('The {animal} said, "Thank you, {name}!"', True),
    ("From that day on, {name} and the {animal} were best friends.", True),
]


def _quarrel_slots(rng: random.Random, slots: _Slots) -> None:
    slots.update(
        friend=_character(rng, avoid=slots["name"])["name"], toy=rng.choice(TOYS), place=rng.choice(PLACES[:4])
    )


QUARREL: list[Template] = [
    ("{Name} and {friend} went to the {place} to play.", False),
    ("{Name} had a new {toy}, and {friend} wanted to play with it.", False),
    ('"No, it is mine!" said {name}.', False),
    ("{Friend} felt sad and walked away.", True),
    ("Then {name} felt bad.", True),
    ('{Sub} said, "I am sorry, {friend}. Let\'s play together."', True),
    ("They played with the {toy} all day and had fun.", True),
]


def _rain_slots(rng: random.Random, slots: _Slots) -> None:
    slots.update(
        helper=rng.choice(HELPERS),
        place=rng.choice(PLACES[:4]),
        toy=rng.choice(TOYS),
        food=rng.choice(FOODS),
        feeling=rng.choice(FEELINGS),
    )


RAIN: list[Template] = [
    ("{Name} and {poss} {helper} went to the {place} on a sunny day.", False),
    ("They played with a {toy} and ran on the grass.", True),
    ("Then the sky got dark and it started to rain.", False),
    ('"Let\'s go home!" said {poss} {helper}.', True),
    ("They ran home fast and got very wet.", True),
    ("At home, they drank warm milk and ate some {food}.", True),
    ("{Name} felt {feeling} and went to sleep.", True),
]

SHAPES: dict[str, tuple[str, list[Template], Callable[[random.Random, _Slots], None]]] = {
    "reach": ("little", REACH, _reach_slots),
    "lost": ("happy", LOST, _lost_slots),
    "share": ("", SHARE, _share_slots),  # first person: opens with "I like {food}."
    "animal": ("kind", ANIMAL, _animal_slots),
    "quarrel": ("small", QUARREL, _quarrel_slots),
    "rain": ("brave", RAIN, _rain_slots),
}


def generate_story(rng: random.Random) -> Story:
    shape = rng.choice(tuple(SHAPES))
    adj, templates, fill = SHAPES[shape]
    slots = _Slots(_character(rng))
    fill(rng, slots)
    first = "I like {food}.".format_map(slots) if shape == "share" else _intro(rng, slots, adj)
    body = [t.format_map(slots) for t, _ in templates]
    droppable = [i for i, (_, d) in enumerate(templates) if d]
    # Keep 4..8 sentences in all: drop a random subset of the optional ones.
    max_drop = min(len(droppable), len(body) + 1 - 4)
    min_drop = max(0, len(body) + 1 - 8)
    drop = set(rng.sample(droppable, rng.randint(min_drop, max_drop)))
    sentences = [first] + [s for i, s in enumerate(body) if i not in drop]
    return Story(shape, tuple(sentences))


# Train stories that guarantee every reference sentence is in distribution even
# though the Lily story itself is held out.
ANCHOR_STORIES: tuple[Story, ...] = (
    Story("reach", LILY_STORY[:4] + ('Lily was very happy and said, "Thank you!"',)),
    Story(
        "reach",
        (
            "Once upon a time, there was a little girl named Lily.",
            "She loved to play in the park with her ball.",
            "One day, she saw a big tree in the park.",
            *LILY_STORY[3:],
        ),
    ),
    Story(
        "reach",
        (
            "There was a boy named Tom.",
            "He loved to play outside with his toys.",
            "One day, he saw a big kite in the sky.",
            "He wanted to catch it, but it was too high.",
            "Tom asked his dad to help him catch the kite.",
        ),
    ),
    Story(
        "share",
        (
            "I like cheese.",
            "Every morning, my mom gives me cheese.",
            "Today, I want to share my cheese with Tom.",
            "We sit in the garden and eat together.",
        ),
    ),
)


def _is_heldout(story: Story, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}|{'|'.join(story.sentences)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELDOUT_FRACTION


def generate_corpus(seed: int = DEFAULT_SEED, num_stories: int = DEFAULT_NUM_STORIES) -> Corpus:
    """Generate ``num_stories`` stories plus the anchors; split by story.

    The split hashes each story's text, so a story generated twice lands on the
    same side, and the Lily story is always held out (never trained on whole).
    """
    rng = random.Random(seed)
    train: list[Story] = list(ANCHOR_STORIES)
    heldout: list[Story] = [Story("reach", LILY_STORY)]
    for _ in range(num_stories):
        story = generate_story(rng)
        if story.sentences == LILY_STORY:
            continue
        (heldout if _is_heldout(story, seed) else train).append(story)
    return Corpus(seed, tuple(train), tuple(heldout))


def corpus_statistics(corpus: Corpus) -> dict[str, int | float]:
    lengths = [len(s.sentences) for s in corpus.train + corpus.heldout]
    train_set = set(corpus.train_sentences())
    heldout = corpus.heldout_sentences()
    return {
        "stories": len(lengths),
        "train_stories": len(corpus.train),
        "heldout_stories": len(corpus.heldout),
        "sentences": sum(lengths),
        "distinct_sentences": len(corpus.all_sentences()),
        "distinct_train_sentences": len(train_set),
        "heldout_sentences_unseen_in_train": sum(s not in train_set for s in heldout),
        "vocabulary_words": len(corpus.vocabulary()),
        "mean_story_length": round(sum(lengths) / len(lengths), 2),
    }


def missing_reference_sentences(corpus: Corpus, sentences: Sequence[str] = REFERENCE_SENTENCES) -> list[str]:
    train = set(corpus.train_sentences())
    return [s for s in sentences if s not in train]


if __name__ == "__main__":
    c = generate_corpus()
    for key, value in corpus_statistics(c).items():
        print(f"{key}: {value}")
    print("missing reference sentences:", missing_reference_sentences(c))
    for story in c.train[4:8]:
        print(" ".join(story.sentences))
