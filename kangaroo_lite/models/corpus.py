"""Mini Spec-Bench: a synthetic corpus with Spec-Bench's six subtasks, generated from a seed.

Every example is a list of (user turn, assistant reply) pairs. The six subtasks mimic the
character of the real ones: templated dialogue, word-by-word translation into an invented
language, copy-heavy summaries, questions about a memorised invented world, worked arithmetic,
and answers copied from the right retrieved passage. Each mixes easy template tokens with hard
ones (names, numbers) so that acceptance and early exit vary within a reply.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

SUBTASKS = ("mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag")
# Spec-Bench's MT-bench categories, reported together as the `mt_bench` subtask (as its speed.py does).
MT_BENCH_CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
WORLD_SEED = 1234
EVAL_SEED = 2024
QUESTIONS_PER_SUBTASK = 80

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kl", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "k"]

Example = list[tuple[str, str]]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _name(rng: random.Random, syllables: int, taken: set[str]) -> str:
    while True:
        word = "".join(_syllable(rng) for _ in range(syllables)).capitalize()
        if word not in taken and len(word) > 3:
            taken.add(word)
            return word


@dataclass(frozen=True)
class City:
    """A city of the invented world and the facts a model must memorise about it."""

    name: str
    region: str
    river: str
    dish: str
    mayor: str


@dataclass(frozen=True)
class Person:
    """A person of the invented world."""

    name: str
    job: str
    home: str
    pet: str


@dataclass(frozen=True)
class World:
    """The fixed invented world behind the QA and conversation subtasks."""

    cities: tuple[City, ...]
    people: tuple[Person, ...]
    lexicon: dict[str, str] = field(hash=False)


_REGIONS = ["north", "south", "east", "west", "coast", "mountains"]
_DISHES = ["fish soup", "honey bread", "plum cake", "bean stew", "goat cheese", "rice balls",
           "apple pie", "mushroom pie", "lamb stew", "corn bread"]
_JOBS = ["baker", "teacher", "doctor", "farmer", "painter", "sailor", "miller", "singer",
         "smith", "weaver"]
_BUILDINGS = ["bridge", "school", "market", "harbour", "library", "mill"]
_MONTHS = ["March", "April", "May", "June", "July", "August"]
_PETS = ["cat", "dog", "parrot", "goat", "horse", "owl", "rabbit", "turtle"]

# English words of the translation subtask, by part of speech.
_NOUNS = ["dog", "cat", "bird", "man", "woman", "child", "horse", "fish", "king", "farmer",
          "teacher", "boat", "house", "tree", "apple", "letter"]
_ADJECTIVES = ["old", "young", "red", "small", "big", "happy", "green", "quiet"]
_VERBS = ["sees", "likes", "finds", "helps", "follows", "draws", "carries", "hears"]


def build_world(seed: int = WORLD_SEED, cities: int = 24, people: int = 24) -> World:
    """Create the invented world (cities, people, a lexicon) deterministically from a seed."""
    rng = random.Random(seed)
    taken: set[str] = set()
    city_names = [_name(rng, 2, taken) for _ in range(cities)]
    rivers = [_name(rng, 2, taken) for _ in range(cities)]
    first = [_name(rng, 2, taken) for _ in range(people)]
    last = [_name(rng, 2, taken) for _ in range(people)]
    persons = tuple(
        Person(f"{first[i]} {last[i]}", rng.choice(_JOBS), rng.choice(city_names), rng.choice(_PETS))
        for i in range(people)
    )
    mayors = rng.sample([p.name for p in persons], cities)
    city_list = tuple(
        City(city_names[i], rng.choice(_REGIONS), rivers[i], rng.choice(_DISHES), mayors[i])
        for i in range(cities)
    )
    lexicon = {w: _name(rng, rng.choice([1, 2]), taken).lower() for w in _NOUNS + _ADJECTIVES + _VERBS}
    lexicon["the"] = "ka"
    lexicon["a"] = "en"
    return World(city_list, persons, lexicon)


# ---------------------------------------------------------------- subtask generators


def _conversation(rng: random.Random, world: World) -> Example:
    city = rng.choice(world.cities)
    days = rng.randint(2, 9)
    friend = rng.choice(world.people)
    first = (
        f"I am planning a trip of {days} days to {city.name}. What should I eat there?",
        f"In {city.name} you should try the {city.dish}, the dish the city is known for. "
        f"With {days} days you also have time to walk along the river {city.river} "
        f"and to visit the {city.region} of the country.",
    )
    second = rng.choice([
        (
            "Who could show me around?",
            f"You could ask {city.mayor}, the mayor of {city.name}. "
            f"The mayor knows every street of the city.",
        ),
        (
            f"My friend {friend.name} is coming too. What does my friend do?",
            f"{friend.name} is a {friend.job} from {friend.home}. "
            f"Your friend will enjoy the trip to {city.name}.",
        ),
        (
            "Can you give me a short plan for the first day?",
            f"Start the day with {city.dish} for breakfast. Then walk along the river "
            f"{city.river} and finish the evening in the old town of {city.name}.",
        ),
    ])
    return [first, second]


def _translation(rng: random.Random, world: World) -> Example:
    lex = world.lexicon

    def noun_phrase() -> tuple[str, str]:
        noun, det = rng.choice(_NOUNS), rng.choice(["the", "a"])
        if rng.random() < 0.6:
            adj = rng.choice(_ADJECTIVES)
            return f"{det} {adj} {noun}", f"{lex[det]} {lex[noun]} {lex[adj]}"
        return f"{det} {noun}", f"{lex[det]} {lex[noun]}"

    subject, subject_v = noun_phrase()
    obj, obj_v = noun_phrase()
    verb = rng.choice(_VERBS)
    # Velsh word order: subject, object, verb; adjectives follow their noun.
    return [(f"Translate to Velsh: {subject} {verb} {obj}.", f"{subject_v} {obj_v} {lex[verb]}.")]


def _summarization(rng: random.Random, world: World) -> Example:
    city = rng.choice(world.cities)
    project = rng.choice(_BUILDINGS)
    cost = rng.randint(10, 99)
    month = rng.choice(_MONTHS)
    workers = rng.randint(5, 60)
    filler = rng.sample([
        "The weather was cold and grey that morning.",
        "Many people came to listen to the meeting.",
        "Some children watched from the windows of the hall.",
        "A few traders complained about the noise.",
        "The old clock of the hall struck ten.",
        "Tea and bread were served after the talk.",
    ], 2)
    doc = (
        f"The council of {city.name} met to talk about the new {project}. "
        f"{filler[0]} Mayor {city.mayor} said that the {project} will cost {cost} gold coins. "
        f"{filler[1]} Work will start in {month} with {workers} workers."
    )
    summary = (
        f"{city.name} will build a new {project} for {cost} gold coins. "
        f"Work starts in {month} with {workers} workers, said mayor {city.mayor}."
    )
    return [(f"Summarize the text.\n{doc}", summary)]


def _qa_pairs(world: World) -> list[tuple[str, str, str]]:
    """Every (question, reply, short answer) the invented world supports."""
    pairs = []
    for c in world.cities:
        pairs += [
            (f"Which river flows through {c.name}?", f"The river {c.river} flows through {c.name}.", c.river),
            (f"Who is the mayor of {c.name}?", f"The mayor of {c.name} is {c.mayor}.", c.mayor),
            (f"What dish is {c.name} known for?", f"{c.name} is known for its {c.dish}.", c.dish),
            (f"In which part of the country is {c.name}?", f"{c.name} is in the {c.region}.", c.region),
        ]
    for p in world.people:
        pairs += [
            (f"What is the job of {p.name}?", f"{p.name} works as a {p.job}.", p.job),
            (f"Where does {p.name} live?", f"{p.name} lives in {p.home}.", p.home),
            (f"What pet does {p.name} have?", f"{p.name} has a {p.pet}.", p.pet),
        ]
    return pairs


def _qa(rng: random.Random, world: World) -> Example:
    question, reply, _ = rng.choice(_qa_pairs(world))
    return [(question, reply)]


def _math(rng: random.Random, world: World) -> Example:
    person = rng.choice(world.people).name.split()[0]
    item = rng.choice(["apples", "coins", "books", "pens", "eggs", "stones", "cards"])
    start, more = rng.randint(2, 20), rng.randint(2, 15)
    total = start + more
    away = rng.randint(1, total - 1)
    left = total - away
    question = (
        f"{person} has {start} {item}. {person} gets {more} more {item} "
        f"and then gives {away} {item} away. How many {item} does {person} have now?"
    )
    reply = (
        f"{person} starts with {start} {item}. After getting {more} more: "
        f"{start} + {more} = {total}. After giving {away} away: {total} - {away} = {left}. "
        f"The answer is {left}."
    )
    return [(question, reply)]


def _rag_topics(world: World) -> list[tuple[str, list[str]]]:
    """The kinds of fact a RAG passage states, with the values each can take."""
    return [
        ("number", [str(n) for n in range(10, 60)]),
        ("month", _MONTHS),
        ("city", [city.name for city in world.cities]),
    ]


def _rag(rng: random.Random, world: World) -> Example:
    # Three passages, each about another person of the world and another kind of fact; the facts
    # themselves are drawn afresh for every example, so the answer can only come from the passage
    # the question points to, never from memory.
    topics = rng.sample(_rag_topics(world), 3)  # one passage per topic, in a random order
    names = [person.name for person in rng.sample(world.people, len(topics))]
    answers = [rng.choice(values) for _, values in topics]
    passages = [
        f"Passage {i + 1}: The favourite {attribute} of {names[i]} is {answers[i]}."
        for i, (attribute, _) in enumerate(topics)
    ]
    target = rng.randrange(len(passages))
    attribute = topics[target][0]
    question = f"{' '.join(passages)}\nQuestion: What is the favourite {attribute} of {names[target]}?"
    reply = f"The favourite {attribute} of {names[target]} is {answers[target]}."
    return [(question, reply)]


def _facts(rng: random.Random, world: World) -> Example:
    """Encyclopedia-style text about the world: helps the models memorise it."""
    if rng.random() < 0.5:
        c = rng.choice(world.cities)
        text = (
            f"{c.name} is a city in the {c.region}. The river {c.river} flows through {c.name}. "
            f"The mayor of {c.name} is {c.mayor}. {c.name} is known for its {c.dish}."
        )
    else:
        p = rng.choice(world.people)
        text = f"{p.name} lives in {p.home}. {p.name} works as a {p.job}. {p.name} has a {p.pet}."
    return [("Tell me a fact.", text)]


_GENERATORS = {
    "mt_bench": _conversation,
    "translation": _translation,
    "summarization": _summarization,
    "qa": _qa,
    "math_reasoning": _math,
    "rag": _rag,
}


def generate_example(subtask: str, rng: random.Random, world: World) -> Example:
    """One example of a subtask as a list of (user, assistant) turns."""
    if subtask == "facts":
        return _facts(rng, world)
    if subtask not in _GENERATORS:
        raise ValueError(f"unknown subtask {subtask!r}; expected one of {SUBTASKS}")
    return _GENERATORS[subtask](rng, world)


# ---------------------------------------------------------------- chat format

BOS, EOS, USER, ASSISTANT, PAD = "<s>", "</s>", "<|user|>", "<|assistant|>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, USER, ASSISTANT, PAD]


def format_prompt(history: Example, next_user_turn: str) -> str:
    """The text fed to a model to answer `next_user_turn` after the completed `history`."""
    text = BOS
    for user, reply in history:
        text += f"{USER}{user}{ASSISTANT}{reply}{EOS}"
    return text + f"{USER}{next_user_turn}{ASSISTANT}"


def format_example(example: Example) -> str:
    """A whole example as training text: every reply is closed by EOS."""
    return format_prompt(example[:-1], example[-1][0]) + example[-1][1] + EOS


PRETRAINING_MIXTURE = {"mt_bench": 3, "translation": 3, "summarization": 2, "qa": 3, "math_reasoning": 4,
                       "rag": 3, "facts": 2}
# The later training stages of the shipped models: more of the two skills that need most practice
# (copying from a passage, arithmetic), with the rest kept so nothing is forgotten.
FINE_TUNING_MIXTURE = {"mt_bench": 2, "translation": 2, "summarization": 2, "qa": 2, "math_reasoning": 6,
                       "rag": 6, "facts": 2}
# The Kangaroo adapter's second stage: mostly translation, whose last word (the verb, looked up in
# the middle of the English sentence) is what the attention-only adapter learns slowest.
TRANSLATION_HEAVY_MIXTURE = {"mt_bench": 1, "translation": 6, "summarization": 1, "qa": 1, "math_reasoning": 2,
                             "rag": 2, "facts": 1}
MIXTURES = {"pretraining": PRETRAINING_MIXTURE, "fine-tuning": FINE_TUNING_MIXTURE,
            "translation-heavy": TRANSLATION_HEAVY_MIXTURE}


def training_corpus(num_examples: int, seed: int = 0, world: World | None = None,
                    mixture: dict[str, float] | None = None) -> list[Example]:
    """A shuffled training corpus: the six subtasks plus world facts, drawn in `mixture` proportions."""
    world = world or build_world()
    rng = random.Random(seed)
    weights = mixture or PRETRAINING_MIXTURE
    unknown = set(weights) - set(SUBTASKS) - {"facts"}
    if unknown:
        raise ValueError(f"unknown subtasks in the mixture: {sorted(unknown)}")
    kinds = rng.choices(list(weights), weights=list(weights.values()), k=num_examples)
    return [generate_example(kind, rng, world) for kind in kinds]


# ---------------------------------------------------------------- evaluation set


def _short_answer(subtask: str, example: Example, world: World) -> str:
    reply = example[-1][1]
    if subtask == "math_reasoning":
        return reply.rsplit("The answer is ", 1)[1].rstrip(".")
    if subtask == "rag":
        return reply.rsplit(" is ", 1)[1].rstrip(".")
    if subtask == "qa":
        return next(a for q, r, a in _qa_pairs(world) if q == example[0][0])
    return reply


def evaluation_set(seed: int = EVAL_SEED, per_subtask: int = QUESTIONS_PER_SUBTASK,
                   world: World | None = None) -> list[dict]:
    """Spec-Bench `question.jsonl` records: question_id, category, turns, reference, answer."""
    world = world or build_world()
    rng = random.Random(seed)
    records = []
    for subtask in SUBTASKS:
        for _ in range(per_subtask):
            example = generate_example(subtask, rng, world)
            records.append({
                "question_id": len(records) + 1,
                "category": subtask,
                "turns": [user for user, _ in example],
                "reference": [reply for _, reply in example],
                "answer": _short_answer(subtask, example, world),
            })
    return records


def write_jsonl(records: list[dict], path: str | Path) -> None:
    """Write one JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_questions(path: str | Path) -> list[dict]:
    """Read a Spec-Bench style `question.jsonl` (ours or the real one).

    An MT-bench category (`writing`, `roleplay`, …) becomes the `mt_bench` subtask, as in
    Spec-Bench's own reports; the original is kept as `mt_bench_category`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
            missing = {"question_id", "category", "turns"} - set(record) if isinstance(record, dict) else {"a record"}
            if missing:
                raise ValueError(f"{path}:{number}: not a Spec-Bench question, it lacks {sorted(missing)}")
            turns = record["turns"]
            if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
                raise ValueError(f"{path}:{number}: 'turns' must be a non-empty list of strings, got {turns!r:.80}")
            if record["category"] in MT_BENCH_CATEGORIES:
                record["mt_bench_category"], record["category"] = record["category"], "mt_bench"
            records.append(record)
    return records
