"""Prompts the project writes for Kangaroo's self-distillation of SmolLM2.

The adapter is trained on the target's own replies (`kangaroo-lite distill-replies`), so it needs user prompts of
the kinds Spec-Bench measures. `build_prompts` assembles them from templates and word lists written for this
project (`data/distill/prompt_sources.json`), drawing from a `random.Random` seeded per subtask: the same seed gives
the same prompts. None is Spec-Bench text (its `question.jsonl` is the evaluation set); only the kinds of request
are mirrored: mt_bench (open-ended chat in MT-bench's eight categories, in equal shares), translation (German,
French, Spanish to English), summarization (news-like passages), qa (short factual questions, some in search-query
style), math_reasoning (word problems) and rag (three passages about fictional entities and a question one answers).

Each prompt is `{"id", "subtask", "category", "prompt"}`, ids `<subtask>-<nnnn>`. The committed set
`data/distill/prompts.jsonl` is `build_prompts()`; `python -m kangaroo_lite.adapter.distill_prompts` rewrites it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models.loading import DATA_DIR

SOURCES_PATH = DATA_DIR / "distill" / "prompt_sources.json"
PROMPTS_PATH = DATA_DIR / "distill" / "prompts.jsonl"

SOURCES = json.loads(SOURCES_PATH.read_text(encoding="utf-8"))
NAMES, CHAT, NEWS, RAG = SOURCES["names"], SOURCES["mt_bench"], SOURCES["summarization"], SOURCES["rag"]
FIRST_NAMES, CITIES, WEEKDAYS, MONTHS = (NAMES[k] for k in ("first_names", "cities", "weekdays", "months"))

Fields = dict[str, Any]  # the values a template of the sources file is filled with
Generator = Callable[[random.Random], tuple[str, str]]  # rng -> (category, prompt)


def _a(phrase: str) -> str:
    """`phrase` with its indefinite article: `an energy company`, `a drone`."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _name(r: random.Random) -> str:
    return f"{r.choice(FIRST_NAMES)} {r.choice(NAMES['surnames'])}"


def _invented(r: random.Random) -> str:
    """A made-up place or brand name such as `Kelbrook`."""
    return r.choice(NAMES["name_heads"]) + r.choice(NAMES["name_tails"])


def _signed(value: int) -> str:
    """`+ 3` or `- 3`: a term to append to an expression."""
    return f"{'+' if value >= 0 else '-'} {abs(value)}"


# mt_bench: one generator per category (build_prompts fills the categories in equal shares)


def _writing(r: random.Random) -> str:
    w = CHAT["writing"]
    if r.random() < 0.25:
        return "Write a polite email to {} {}.".format(*r.choice(w["emails"]))
    return f"Write {r.choice(w['forms'])} about {r.choice(w['topics'])}.{r.choice(w['constraints'])}"


def _reasoning(r: random.Random) -> str:
    p, kind = CHAT["reasoning"], r.randrange(8)
    if kind == 0:
        a, b, c = r.sample(FIRST_NAMES, 3)
        more, least = r.choice(p["comparatives"])
        return f"{a} is {more} than {b}. {b} is {more} than {c}. Who is the {least}? Explain your reasoning."
    if kind == 1:
        x, y, z = r.choice(p["syllogisms"])
        return f"All {x} are {y}, and some {y} are {z}. Does it follow that some {x} are {z}? Explain."
    if kind == 2:
        day, n = r.choice(WEEKDAYS), r.randint(3, 400)
        return f"If today is {day}, what day of the week will it be in {n} days? Show your reasoning."
    if kind == 3:
        return (f"At a meeting, each of {r.randint(4, 30)} people shakes hands with every other person exactly once. "
                "How many handshakes?")
    if kind == 4:
        small, big, target = r.choice(p["jugs"])
        return (f"You have a {small}-litre jug and a {big}-litre jug and unlimited water. "
                f"How can you measure exactly {target} litres?")
    if kind == 5:
        a, b = r.sample(FIRST_NAMES, 2)
        puzzle = r.choice(p["knights"]).format(a=a, b=b)
        return f"On an island, knights always tell the truth and knaves always lie. {puzzle} What are {a} and {b}?"
    if kind == 6:
        hour, minute = r.randint(1, 12), r.choice([0, 10, 15, 20, 30, 40, 45, 50])
        return f"What is the angle between the hour hand and the minute hand of a clock at {hour}:{minute:02d}?"
    start, step = r.randint(1, 20), r.randint(2, 9)
    seq = [start + i * step for i in range(5)] if r.random() < 0.5 else [start * step**i for i in range(4)]
    return f"What number comes next in the sequence {', '.join(map(str, seq))}? Explain the pattern."


def _math(r: random.Random) -> str:
    kind = r.randrange(8)
    if kind == 0:
        a, x, b = r.randint(2, 12), r.randint(-10, 15), r.randint(-20, 30)
        return f"Solve for x: {a}x {_signed(b)} = {a * x + b}."
    if kind == 1:
        r1, r2 = r.randint(-9, 9), r.randint(-9, 9)
        return f"Solve the quadratic equation x^2 {_signed(-(r1 + r2))}x {_signed(r1 * r2)} = 0."
    if kind == 2:
        points = [(r.randint(-5, 8), r.randint(-5, 8)) for _ in range(3)]
        return "What is the area of the triangle with vertices {}, {} and {}?".format(*points)
    if kind == 3:
        n = r.randint(2, 4)
        return f"If you roll {n} fair six-sided dice, what is the probability that their sum is {r.randint(n, 6 * n)}?"
    if kind == 4:
        a, b = r.randint(12, 300), r.randint(12, 300)
        return f"Find the greatest common divisor and the least common multiple of {a} and {b}."
    if kind == 5:
        coefs = [r.randint(-6, 9) for _ in range(4)]
        poly = " + ".join(f"{c}x^{3 - i}" if i < 3 else str(c) for i, c in enumerate(coefs)).replace("+ -", "- ")
        return f"What is the derivative of f(x) = {poly}?"
    if kind == 6:
        pct, years, amount = r.choice([2, 3, 4, 5, 6]), r.randint(2, 10), r.choice([500, 1000, 2500, 10000])
        return (f"If you invest ${amount} at {pct}% interest compounded yearly, "
                f"how much will you have after {years} years?")
    return f"Is {r.randint(50, 9999)} a prime number? Explain how you checked."


def _coding(r: random.Random) -> str:
    p, roll = CHAT["coding"], r.random()
    if roll < 0.65:
        return r.choice(p["frames"]).format(lang=r.choice(p["languages"]), task=r.choice(p["tasks"]))
    if roll < 0.9:
        return r.choice(p["snippet_frames"]).format(code=r.choice(p["snippets"]))
    return f"Write a SQL query that {r.choice(p['sql_tasks'])}. Assume a reasonable table schema and state it."


def _extraction(r: random.Random) -> str:
    p, kind = CHAT["extraction"], r.randrange(4)
    if kind == 0:
        people = [(_name(r), r.randint(19, 78), r.choice(CITIES)) for _ in range(r.randint(3, 5))]
        text = " ".join(f"{n} is {a} years old and lives in {c}." for n, a, c in people)
        return ("Extract every person's name, age and city from the text below and return them as a JSON list."
                f"\n\n{text}")
    if kind == 1:
        reviews = [f"Review {i + 1}: The {product} is {r.choice(p['ratings'])}. I give it {r.randint(1, 5)} out of 5 "
                   "stars." for i, product in enumerate(r.sample(p["products"], 3))]
        return "List each product and its star rating from these reviews:\n\n" + "\n".join(reviews)
    if kind == 2:
        day, month, hour, room = r.randint(1, 28), r.choice(MONTHS), r.randint(8, 17), r.choice(p["rooms"])
        return ("Extract the date, time, location and people mentioned in this message:\n\nHi all, a quick note from "
                f"{_name(r)}: the project review with {_name(r)} is moved to {month} {day} at {hour}:00 in {room}. "
                "Please bring your status reports.")
    items = r.sample(p["receipt_items"], 4)
    text = ", ".join(f"{r.randint(1, 6)} x {item} at ${r.randint(1, 20)}.{r.randint(0, 99):02d}" for item in items)
    return f"Turn this receipt into a table with columns item, quantity and unit price: {text}"


def _stem(r: random.Random) -> str:
    p = CHAT["stem"]
    if r.random() < 0.3:
        return "What is the difference between {} and {}?".format(*r.choice(p["pairs"]))
    return r.choice(p["frames"]).format(c=r.choice(p["concepts"]))


HUMANITIES = CHAT["humanities"]
HUMANITIES_FRAMES: list[Callable[[random.Random], str]] = [
    lambda r: f"What were the main causes and consequences of {r.choice(HUMANITIES['events'])}?",
    lambda r: f"Summarize the key ideas of {r.choice(HUMANITIES['thinkers'])}.",
    lambda r: f"How did {r.choice(HUMANITIES['movements'])} influence the art that came after it?",
    lambda r: "Compare the views of {} and {} on {}.".format(*r.sample(HUMANITIES["thinkers"], 2),
                                                          r.choice(HUMANITIES["themes"])),
    lambda r: f"Why do historians still debate {r.choice(HUMANITIES['events'])}?",
    lambda r: f"Write a short lesson plan introducing {r.choice(HUMANITIES['movements'])} to teenagers.",
    lambda r: f"What can {r.choice(HUMANITIES['thinkers'])} teach us about {r.choice(HUMANITIES['themes'])} today?",
    lambda r: f"Describe daily life for ordinary people during {r.choice(HUMANITIES['events'])}.",
]
ROLEPLAY = CHAT["roleplay"]
MT_BENCH: dict[str, Callable[[random.Random], str]] = {  # MT-bench's order, which breaks ties in build_prompts
    "writing": _writing,
    "roleplay": lambda r: r.choice(ROLEPLAY["frames"]).format(role=r.choice(ROLEPLAY["roles"]),
                                                              task=r.choice(ROLEPLAY["tasks"])),
    "reasoning": _reasoning, "math": _math, "coding": _coding, "extraction": _extraction, "stem": _stem,
    "humanities": lambda r: r.choice(HUMANITIES_FRAMES)(r),
}


def _translation(r: random.Random) -> tuple[str, str]:
    language = r.choices(["German", "French", "Spanish"], weights=[2, 1, 1])[0]
    lang, parts = SOURCES["translation"][language], []
    for _ in range(r.choices([1, 2], weights=[3, 1])[0]):
        if r.random() < 0.4:
            parts.append(r.choice(lang["sentences"]))
            continue
        subject, phrase, time, clause = (r.choice(lang[k]) for k in ("subjects", "phrases", "times", "clauses"))
        pattern = lang["patterns"][0 if r.random() < 0.5 else 1]  # subject first, or time first
        parts.append(pattern.format(subject=subject, Subject=_cap(subject), time=time, Time=_cap(time),
                                    phrase=phrase, clause=clause))
    return f"{lang['code']}-en", f"Translate {language} to English: {' '.join(parts)}"


# summarization: the fields of the news templates in the sources file, drawn in a fixed order


def _news_city(r: random.Random) -> Fields:
    f = dict(city=r.choice(CITIES), mayor=_name(r), critic=_name(r), **r.choice(NEWS["city_projects"]),
             yes=r.randint(5, 12))
    return f | dict(no=r.randint(1, f["yes"] - 1), cost=r.randint(3, 90), years=r.randint(2, 9),
                    months=r.randint(8, 36), day=r.choice(WEEKDAYS), criticism=r.choice(NEWS["criticisms"]),
                    month=r.choice(MONTHS), meeting_day=r.choice(WEEKDAYS))


def _news_business(r: random.Random) -> Fields:
    kind, product = r.choice(NAMES["company_kinds"])
    f = dict(company=_invented(r) + r.choice(NEWS["company_suffixes"]), ceo=_name(r), analyst=_name(r),
             growth=r.randint(-15, 60), staff=r.randint(40, 5000), price=r.randint(19, 900),
             verdict=r.choice(NEWS["verdicts"]))
    return f | dict(a_kind=_a(kind), product=product, city=r.choice(CITIES), day=r.choice(WEEKDAYS),
                    month=r.choice(MONTHS), years=r.randint(2, 6), shares=r.choice(NEWS["share_moves"]),
                    trend=f"{'rose' if f['growth'] >= 0 else 'fell'} by {abs(f['growth'])} percent")


def _news_sports(r: random.Random) -> Fields:
    s = r.choice(NEWS["sports"])
    home, away = (f"{c} {r.choice(NEWS['team_names'])}" for c in r.sample(CITIES, 2))
    a, b = r.randint(*s["scores"]), r.randint(*s["scores"])
    a += a == b  # no draws
    return dict(home=home, away=away, high=max(a, b), low=min(a, b), sport=s["sport"], unit=s["unit"],
                star=_name(r), coach=_name(r), day=r.choice(WEEKDAYS), fans=r.randint(2, 60) * 1000,
                scored=r.randint(2, 12), remark=r.choice(NEWS["remarks"]), place=r.choice(NEWS["league_places"]),
                games=r.randint(3, 12))


def _news_community(r: random.Random) -> Fields:
    (who, what), city = r.choice(NEWS["community"]), r.choice(CITIES)
    return dict(city=city, who=who.format(surname=r.choice(NAMES["surnames"]), city=city),
                what=what.format(n=r.randint(12, 900)), organiser=_name(r), origin=r.choice(NEWS["origins"]),
                started=r.choice(NEWS["starts"]), donation=r.choice(NEWS["donations"]))


NEWS_FIELDS: dict[str, Callable[[random.Random], Fields]] = {
    "city": _news_city,
    "business": _news_business,
    "science": lambda r: dict(**r.choice(NEWS["discoveries"]), lead=_name(r), other=_name(r), city=r.choice(CITIES),
                              months=r.randint(2, 30), reaction=r.choice(NEWS["reactions"]), month=r.choice(MONTHS),
                              plan=r.choice(NEWS["plans"])),
    "sports": _news_sports,
    "weather": lambda r: dict(city=r.choice(CITIES), official=_name(r), storm=_cap(r.choice(NEWS["storms"])),
                              day=r.choice(WEEKDAYS), homes=r.randint(2, 90) * 100, schools=r.randint(2, 40),
                              calls=r.randint(1, 20) * 50, better_day=r.choice(WEEKDAYS)),
    "community": _news_community,
}


def _summarization(r: random.Random) -> tuple[str, str]:
    kind = r.choice(list(NEWS_FIELDS))
    frame = r.choice(NEWS["frames"])
    return kind, frame.format(text=NEWS["templates"][kind].format(**NEWS_FIELDS[kind](r)))


def _qa(r: random.Random) -> tuple[str, str]:
    template, fills = r.choice(SOURCES["qa"])
    question = template.format(r.choice(fills))
    if r.random() < 0.5:
        return "query", question.rstrip("?").lower()  # search-query style
    return "question", question


# math_reasoning: the fields of the word-problem templates in the sources file (integer answers by construction)


def _wp_work(r: random.Random) -> Fields:
    f = dict(rate=r.randint(12, 45), hours=r.randint(3, 9), days=r.randint(3, 6), bonus=r.choice([0, 25, 50, 100]))
    bonus = f" plus a ${f['bonus']} bonus" if f["bonus"] else ""
    return f | dict(bonus=bonus, name=r.choice(FIRST_NAMES), pronoun=r.choice(["she", "he"]))


def _wp_sharing(r: random.Random) -> Fields:
    kids, each = r.randint(2, 8), r.randint(3, 15)
    return dict(kids=kids, stickers=kids * each + r.randint(0, kids - 1))


WORD_PROBLEMS: dict[str, Callable[[random.Random], Fields]] = {
    "bakery": lambda r: dict(trays=r.randint(3, 12), per_tray=r.randint(6, 24), sold=r.randint(5, 30),
                             name=r.choice(FIRST_NAMES), given=r.randint(1, 5)),
    "savings": lambda r: dict(weekly=r.randint(5, 40), weeks=r.randint(3, 20), price=r.randint(50, 400),
                              name=r.choice(FIRST_NAMES)),
    "speed": lambda r: dict(speed=r.choice([40, 45, 50, 60, 72, 80, 90]), hours=r.randint(2, 7),
                            stop=r.randint(10, 50)),
    "discount": lambda r: dict(price=r.choice([20, 40, 50, 80, 120, 200]), pct=r.choice([10, 20, 25, 50]),
                               qty=r.randint(2, 6), name=r.choice(FIRST_NAMES), pronoun=r.choice(["she", "he"])),
    "ages": lambda r: dict(age=r.randint(4, 15), diff=r.randint(2, 30), years=r.randint(2, 12),
                           names=r.sample(FIRST_NAMES, 2)),
    "garden": lambda r: dict(rows=r.randint(3, 15), per_row=r.randint(4, 20), eaten=r.randint(2, 9),
                             each=r.randint(3, 12)),
    "work": _wp_work,
    "sharing": _wp_sharing,
    "recipe": lambda r: dict(serves=r.choice([4, 6, 8]), flour=r.choice([200, 300, 400, 600]),
                             guests=r.choice([12, 16, 24, 48])),
    "shop": lambda r: dict(notebooks=r.randint(2, 6), notebook_price=r.randint(2, 9), pens=r.randint(1, 5),
                           pen_price=r.randint(3, 15), paid=r.choice([50, 100]), name=r.choice(FIRST_NAMES),
                           pronoun=r.choice(["she", "he"])),
    "reading": lambda r: dict(pages=r.randint(150, 600), per_day=r.randint(10, 40), days=r.randint(2, 6),
                              name=r.choice(FIRST_NAMES)),
    "tank": lambda r: dict(capacity=r.choice([120, 200, 240, 300, 360]), inflow=r.choice([10, 12, 15, 20]),
                           leak=r.choice([2, 3, 4, 5])),
}


def _math_reasoning(r: random.Random) -> tuple[str, str]:
    kind = r.choice(list(WORD_PROBLEMS))
    text = SOURCES["math_reasoning"][kind].format(**WORD_PROBLEMS[kind](r))
    if r.random() < 0.3:
        text += " Think step by step."
    return kind, text


# rag: the fields of the document templates in the sources file; a document's title is the field named as its kind


def _doc_company(r: random.Random) -> Fields:
    company = _invented(r).capitalize() + r.choice(RAG["company_suffixes"])
    kind, product = r.choice(NAMES["company_kinds"])
    f = dict(company=company, a_kind=_a(kind), product=product, founder=_name(r), cofounder=_name(r),
             city=r.choice(CITIES), year=r.randint(1975, 2021), staff=r.randint(12, 20000))
    return f | dict(first_sold=min(f["year"] + r.randint(1, 6), 2024))


def _doc_species(r: random.Random) -> Fields:
    adjective, animal = r.choice(RAG["adjectives"]), r.choice(RAG["animals"])
    return dict(species=f"{_invented(r)} {adjective} {animal}", habitat=r.choice(RAG["habitats"]),
                food=r.choice(RAG["foods"]), scientist=_name(r), year=r.randint(1820, 2020), size=r.randint(2, 40),
                status=r.choice(RAG["statuses"]))


def _doc_person(r: random.Random) -> Fields:
    person, born = _name(r), r.randint(1820, 1980)
    job, work = r.choice(RAG["jobs"])
    return dict(person=person, first=person.split()[0], born=born, a_job=_a(job), work=work, city=r.choice(CITIES),
                award=r.choice(RAG["awards"]), award_year=born + 40, studied=r.choice(CITIES),
                former_job=r.choice(RAG["former_jobs"]))


DOCS: dict[str, Callable[[random.Random], Fields]] = {
    "town": lambda r: dict(town=_invented(r), founder=_name(r), year=r.randint(1200, 1950),
                           pop=r.randint(800, 90000), specialty=r.choice(RAG["specialties"]),
                           festival=r.choice(RAG["festivals"]), month=r.choice(MONTHS)),
    "company": _doc_company,
    "species": _doc_species,
    "person": _doc_person,
    "gadget": lambda r: dict(gadget=f"{_invented(r).capitalize()} {r.choice(RAG['models'])}{r.randint(1, 9)}",
                             a_device=_a(r.choice(RAG["devices"])), year=r.randint(2005, 2024),
                             weight=r.randint(40, 900), hours=r.randint(4, 60),
                             colours="{}, {} and {}".format(*r.sample(RAG["colours"], 3)),
                             praise=r.choice(RAG["praises"])),
}


def _rag(r: random.Random) -> tuple[str, str]:
    kinds = r.sample(list(DOCS), 3)
    docs = [DOCS[kind](r) for kind in kinds]
    target = r.randrange(3)
    question = r.choice(RAG["docs"][kinds[target]]["questions"]).format(**docs[target])
    rendered = "\n\n".join(f"Document [{i + 1}] (Title: {fields[kind]}) {RAG['docs'][kind]['text'].format(**fields)}"
                           for i, (kind, fields) in enumerate(zip(kinds, docs, strict=True)))
    return kinds[target], r.choice(RAG["frames"]).format(docs=rendered, question=question,
                                                         question_lower=question[0].lower() + question[1:])


# after mt_bench, which build_prompts fills category by category; each of these draws the category with the prompt
SUBTASKS: dict[str, Generator] = {
    "translation": _translation, "summarization": _summarization, "qa": _qa, "math_reasoning": _math_reasoning,
    "rag": _rag,
}


def build_prompts(per_subtask: int = 200, seed: int = 0) -> list[dict]:
    """`per_subtask` distinct prompts of each of the six subtasks, the same for the same seed."""
    prompts = []
    for subtask in ("mt_bench", *SUBTASKS):
        r = random.Random(f"{seed}:{subtask}")  # a stream per subtask: editing one generator leaves the others as is
        per_category = dict.fromkeys(MT_BENCH, 0)
        seen: set[str] = set()
        draws = 0
        while len(seen) < per_subtask:
            draws += 1
            if draws > 50 * per_subtask:
                raise ValueError(f"{subtask}: only {len(seen)} distinct prompts after {draws - 1} draws")
            if subtask == "mt_bench":  # the category with the fewest prompts so far goes next
                category = min(per_category, key=per_category.__getitem__)
                text = MT_BENCH[category](r)
            else:
                category, text = SUBTASKS[subtask](r)
            if text in seen:
                continue
            seen.add(text)
            if subtask == "mt_bench":
                per_category[category] += 1
            prompts.append({"id": f"{subtask}-{len(seen) - 1:04d}", "subtask": subtask, "category": category,
                            "prompt": text})
    return prompts


def write_prompts(path: Path = PROMPTS_PATH) -> None:
    """Write `build_prompts()` to `path` as JSON lines, the format of `data/distill/prompts.jsonl`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(prompt, ensure_ascii=False) + "\n" for prompt in build_prompts())


if __name__ == "__main__":
    write_prompts()
