"""Captions from CelebA's 40 attributes, and back: which attributes a free prompt asks for (notebooks 03-04).

CelebA labels every face with 40 yes/no attributes but not a single sentence, so we write the sentences:
each attribute gets a few English phrasings (`PHRASES`), and `caption` strings a random handful of them
around a noun, e.g. "a photo of a smiling young woman with blond hair and heavy makeup, wearing earrings".
Seeing many different sentences for the same face is what teaches a text encoder that "with glasses" and
"in spectacles" mean the same thing.

Where a phrase goes is read off the phrase itself:
- Male is the noun ("man", "guy" / "woman", "lady"), Blurry describes the photo ("a blurry photo of ...");
- a phrase that starts with "with", "wearing", "in", "without" or "not" is a clause after the noun
  ("with blond hair", "wearing a hat", "not smiling"); clauses with the same first word are merged
  ("with blond hair and bangs");
- anything else is an adjective before the noun ("smiling", "young", "bald").

`parse_prompt` runs the same table backwards: it finds the phrases' key words in a prompt ("glasses",
"blond hair", "woman") and flips them when "no", "not", "without" or "nor" comes just before
("a man without glasses" -> Male: True, Eyeglasses: False). Prompts that contradict themselves raise
`ContradictoryPrompt`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from helpers.data.celeba import ATTRIBUTES
from helpers.errors import CourseError


class ContradictoryPrompt(CourseError):
    """A prompt that asks for an attribute and its opposite ("a man who is a woman")."""


@dataclass(frozen=True)
class AttributePhrase:
    """How captions say that a face has an attribute (`present`) or has not (`absent`).

    `trait_when_absent`: the absence is a visible trait of its own ("woman", "older", "with a beard"), so
    captions use those phrasings as freely as the present ones.
    """

    present: tuple[str, ...]
    absent: tuple[str, ...] = ()
    trait_when_absent: bool = False

    def __repr__(self) -> str:
        absent = f"   | absent: {' / '.join(self.absent)}" if self.absent else ""
        return f"present: {' / '.join(self.present)}{absent}"


def _p(present: str, absent: str = "", trait: bool = False) -> AttributePhrase:
    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split("|") if part.strip())

    return AttributePhrase(split(present), split(absent), trait)


# The vocabulary: synonyms separated by "|"; the first phrasing is the one canonical captions use.
PHRASES: dict[str, AttributePhrase] = {
    "5_o_Clock_Shadow": _p("with stubble | with a five o'clock shadow", "without stubble"),
    "Arched_Eyebrows": _p("with arched eyebrows | with arched brows"),
    "Attractive": _p("attractive | good-looking"),
    "Bags_Under_Eyes": _p("with bags under the eyes | with puffy eyes"),
    "Bald": _p("bald | with a bald head"),
    "Bangs": _p("with bangs | with a fringe", "without bangs"),
    "Big_Lips": _p("with big lips | with full lips"),
    "Big_Nose": _p("with a big nose | with a large nose"),
    "Black_Hair": _p("with black hair | black-haired"),
    "Blond_Hair": _p("with blond hair | with blonde hair | blond-haired"),
    "Blurry": _p("blurry | blurred | out-of-focus", "sharp"),
    "Brown_Hair": _p("with brown hair | brown-haired"),
    "Bushy_Eyebrows": _p("with bushy eyebrows | with thick eyebrows", "with thin eyebrows"),
    "Chubby": _p("chubby | plump"),
    "Double_Chin": _p("with a double chin"),
    "Eyeglasses": _p("wearing eyeglasses | with glasses | in spectacles | wearing glasses | bespectacled",
                     "without glasses | not wearing glasses | with no glasses"),
    "Goatee": _p("with a goatee", "without a goatee"),
    "Gray_Hair": _p("with gray hair | with grey hair | gray-haired | with silver hair"),
    "Heavy_Makeup": _p("with heavy makeup | wearing heavy makeup | wearing a lot of makeup",
                       "without makeup | wearing no makeup"),
    "High_Cheekbones": _p("with high cheekbones"),
    "Male": _p("man | guy | gentleman", "woman | lady", trait=True),
    "Mouth_Slightly_Open": _p("with a slightly open mouth | with parted lips | with mouth slightly open",
                              "with a closed mouth | with mouth closed"),
    "Mustache": _p("with a mustache | with a moustache", "without a mustache"),
    "Narrow_Eyes": _p("with narrow eyes | with narrowed eyes"),
    "No_Beard": _p("clean-shaven | with no beard | beardless", "with a beard | bearded", trait=True),
    "Oval_Face": _p("with an oval face"),
    "Pale_Skin": _p("with pale skin | pale-skinned"),
    "Pointy_Nose": _p("with a pointy nose | with a pointed nose"),
    "Receding_Hairline": _p("with a receding hairline"),
    "Rosy_Cheeks": _p("with rosy cheeks | with pink cheeks | rosy-cheeked"),
    "Sideburns": _p("with sideburns", "without sideburns"),
    "Smiling": _p("smiling | with a smile", "not smiling | with a neutral expression | serious"),
    "Straight_Hair": _p("with straight hair"),
    "Wavy_Hair": _p("with wavy hair | wavy-haired"),
    "Wearing_Earrings": _p("wearing earrings | with earrings", "without earrings"),
    "Wearing_Hat": _p("wearing a hat | in a hat | with a hat", "without a hat | not wearing a hat"),
    "Wearing_Lipstick": _p("wearing lipstick | with red lips", "without lipstick"),
    "Wearing_Necklace": _p("wearing a necklace | with a necklace", "without a necklace"),
    "Wearing_Necktie": _p("wearing a necktie | wearing a tie | in a tie", "without a tie"),
    "Young": _p("young | youthful", "older | middle-aged", trait=True),
}

# More words that prompts may use; captions never produce them, parse_prompt understands them.
PARSE_ONLY: dict[str, tuple[str, str]] = {  # attribute: (present words, absent words)
    "Male": ("male | men | guys | gentlemen | boy", "female | women | ladies | girl"),
    "Young": ("", "old | elderly | senior | aged"),
    "Smiling": ("smile | smiles | grin | grinning | laughing", "unsmiling | frowning"),
    "Eyeglasses": ("eyeglasses | sunglasses | specs", ""),
    "Blond_Hair": ("blond | blonde | fair hair | fair-haired", ""),
    "Brown_Hair": ("brunette", ""),
    "Gray_Hair": ("grey-haired | silver-haired | white hair | white-haired", ""),
    "Mustache": ("mustached | moustached", ""),
    "Wearing_Hat": ("cap | beanie | hats", "bareheaded"),
    "Heavy_Makeup": ("makeup | make-up | made-up", ""),
    "5_o_Clock_Shadow": ("stubbly | 5 o'clock shadow", ""),
    "Mouth_Slightly_Open": ("open mouth | mouth open | lips parted", ""),
    "Bangs": ("fringe", ""),
    "Pale_Skin": ("pale", ""),
    "Wearing_Earrings": ("earring", ""),
    "Wearing_Lipstick": ("lipstick", ""),
    "Blurry": ("out of focus", "in focus | in-focus"),
}

NOUN, PHOTO = "Male", "Blurry"
CLAUSE_WORDS = ("with", "wearing", "in", "without", "not")
NEGATIONS = frozenset({"no", "not", "without", "never", "neither", "nor"})
# Words that may sit between a negation and what it negates ("not wearing a hat", "without any glasses").
FILLERS = frozenset({"a", "an", "the", "any", "some", "with", "wearing", "wear", "wears", "in", "has", "have",
                     "having", "had", "who", "is", "are", "was", "be", "does", "do", "did", "he", "she", "they",
                     "his", "her", "their", "very", "really", "visible"})
# At most one of each group may be present; a prompt naming two of them is a contradiction.
EXCLUSIVE = (("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"), ("Straight_Hair", "Wavy_Hair"))
# How often random captions pick an attribute: the ones a small model can see come up more often.
SALIENCE = {"Black_Hair": 4, "Blond_Hair": 4, "Brown_Hair": 4, "Gray_Hair": 4, "Smiling": 4, "Eyeglasses": 4,
            "Wearing_Hat": 4, "No_Beard": 3, "Heavy_Makeup": 3, "Wearing_Lipstick": 3, "Bald": 4, "Mustache": 3,
            "Goatee": 3, "Young": 2, "Bangs": 2, "Wearing_Necktie": 2, "Mouth_Slightly_Open": 2}
MEN_ONLY_NEGATIVES = {"5_o_Clock_Shadow", "Goatee", "Mustache", "Sideburns", "Wearing_Necktie"}
WOMEN_ONLY_NEGATIVES = {"Heavy_Makeup", "Wearing_Lipstick"}
PREFIXES = ("a photo of", "a photo of", "a portrait of", "a close-up of", "a picture of", "an image of", "")
PHOTO_WORDS = ("photo", "picture", "portrait")
FACE_EXAMPLE = 'describe a face, e.g. "a smiling woman with blond hair"'  # what an empty prompt is told
PERSON_RATE = 0.1  # captions that say "person" instead of man/woman (the zero-shot prompts use that noun)
NEGATIVE_RATE = 0.3  # captions that also say what the face does NOT have ("without glasses")


# ------------------------------------------------------------------------------------------ phrasing
def phrase_slot(attribute: str, phrase: str) -> str:
    """Where `phrase` goes in a caption: "noun", "photo", "clause" (after the noun) or "adjective"."""
    if attribute == NOUN:
        return "noun"
    if attribute == PHOTO:
        return "photo"
    return "clause" if phrase.split(" ", 1)[0] in CLAUSE_WORDS else "adjective"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _and(items: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b", "c"] -> "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _merge(clauses: Sequence[str], merge: bool = True) -> list[str]:
    """Clauses sharing a first word "with"/"wearing" become one: "with blond hair and bangs"."""
    groups: dict[str, list[str]] = {}
    out: list[str] = []
    for clause in clauses:
        lead, rest = clause.split(" ", 1)
        if merge and lead in ("with", "wearing"):
            if lead not in groups:
                groups[lead] = []
                out.append(lead)
            groups[lead].append(rest)
        else:
            out.append(clause)
    return [f"{item} {_and(groups[item])}" if item in groups else item for item in out]


def _row(attrs_row) -> dict[str, bool]:
    values = attrs_row.tolist() if hasattr(attrs_row, "tolist") else list(attrs_row)
    if len(values) != len(ATTRIBUTES):
        raise ValueError(f"an attribute row has {len(ATTRIBUTES)} values, got {len(values)}")
    return {name: float(value) > 0.5 for name, value in zip(ATTRIBUTES, values)}  # 0/1 and -1/1 rows alike


def _describable(on: dict[str, bool], pick=lambda names: names[0]) -> list[tuple[str, bool]]:
    """(attribute, as present?) for everything a caption may state about a face, Male excluded (the noun)."""
    skip = set()
    for group in EXCLUSIVE:  # name one hair colour / texture only, even if the labels list two
        present = [name for name in group if on[name]]
        if present:
            kept = pick(present)
            skip.update(name for name in present if name != kept)
    facts = []
    for name in ATTRIBUTES:
        if name == NOUN or name in skip:
            continue
        if on[name] and PHRASES[name].present and not (name == "No_Beard" and not on["Male"]):
            facts.append((name, True))  # "clean-shaven" only for men
        elif not on[name] and PHRASES[name].trait_when_absent:
            facts.append((name, False))
    return facts


def _negatable(on: dict[str, bool]) -> list[str]:
    """Absent attributes a caption may deny explicitly ("without glasses", "not smiling")."""
    names = []
    for name in ATTRIBUTES:
        spec = PHRASES[name]
        if on[name] or not spec.absent or spec.trait_when_absent:
            continue
        if (name in MEN_ONLY_NEGATIVES and not on["Male"]) or (name in WOMEN_ONLY_NEGATIVES and on["Male"]):
            continue
        names.append(name)
    return names


def _weighted_sample(names: list[str], k: int, rng: random.Random) -> list[str]:
    pool, chosen = list(names), []
    while pool and len(chosen) < k:
        pick = rng.choices(pool, weights=[SALIENCE.get(n, 1) for n in pool])[0]
        pool.remove(pick)
        chosen.append(pick)
    return chosen


def _sentence(noun: str, said: list[tuple[str, str]], prefix: str, rng: random.Random | None) -> str:
    """Assemble prefix + article + adjectives + noun + clauses; `rng=None` gives the canonical layout."""
    adjectives = [text for name, text in said if phrase_slot(name, text) == "adjective"]
    clauses = [text for name, text in said if phrase_slot(name, text) == "clause"]
    photo = [text for name, text in said if name == PHOTO]
    if rng is not None:
        rng.shuffle(adjectives)
        rng.shuffle(clauses)
        if rng.random() < 0.5:  # half the time, what the face lacks comes last
            clauses.sort(key=lambda clause: clause.startswith(("without", "not")))
    clauses = _merge(clauses, merge=rng is None or rng.random() < 0.8)
    if photo:
        word = rng.choice(PHOTO_WORDS) if rng else "photo"
        prefix = f"{_article(photo[0])} {photo[0]} {word} of"
    person = " ".join(adjectives + [noun])
    text = f"{prefix} {_article(person)} {person}".strip()
    for index, clause in enumerate(clauses):
        glue = " " if index == 0 else (", " if rng is None else rng.choice((", ", ", ", " and ")))
        text += glue + clause
    return text


def caption(attrs_row, rng: random.Random, *, canonical: bool = False) -> str:
    """One English caption of a face from its 40 attributes (a sequence or tensor of 0/1, or -1/1).

    Random: man/woman as the noun, 2-5 of the face's attributes (the visible ones more often), random
    synonyms, order and prefix, sometimes a stated absence ("without glasses"). `canonical=True` ignores
    `rng` and lists every attribute the face has, first phrasings, in a fixed order (for retrieval tests).
    """
    on = _row(attrs_row)
    spec = PHRASES[NOUN]
    if canonical:
        facts = sorted(_describable(on), key=lambda fact: _CANONICAL_RANK[fact[0]])
        said = [(name, (PHRASES[name].present if present else PHRASES[name].absent)[0]) for name, present in facts]
        return _sentence(spec.present[0] if on[NOUN] else spec.absent[0], said, "a photo of", None)
    noun = "person" if rng.random() < PERSON_RATE else rng.choice(spec.present if on[NOUN] else spec.absent)
    facts = dict(_describable(on, pick=rng.choice))
    chosen = _weighted_sample(list(facts), rng.randint(2, 5), rng)
    said = [(name, rng.choice(PHRASES[name].present if facts[name] else PHRASES[name].absent)) for name in chosen]
    deniable = _negatable(on)
    if deniable and rng.random() < NEGATIVE_RATE:
        name = _weighted_sample(deniable, 1, rng)[0]
        said.append((name, rng.choice(PHRASES[name].absent)))
    return _sentence(noun, said, rng.choice(PREFIXES), rng)


def captions_for(attrs: torch.Tensor, seed: int, per_image: int = 1) -> list[str] | list[list[str]]:
    """Random captions for every row of `attrs` (N, 40): a list of N strings, or N lists when per_image > 1."""
    rng = random.Random(seed)
    rows = attrs.tolist()
    if per_image == 1:
        return [caption(row, rng) for row in rows]
    return [[caption(row, rng) for _ in range(per_image)] for row in rows]


# Canonical captions name the most visible attributes first (a tokenizer may cut long captions short).
_CANONICAL_ORDER = ("Blurry", "Attractive", "Smiling", "Chubby", "Young", "Bald", "No_Beard", "Black_Hair",
                    "Blond_Hair", "Brown_Hair", "Gray_Hair", "Wavy_Hair", "Straight_Hair", "Bangs", "Mustache",
                    "Goatee", "Heavy_Makeup", "Eyeglasses", "Wearing_Hat", "Wearing_Lipstick")
_CANONICAL_RANK = {name: rank for rank, name in enumerate(_CANONICAL_ORDER + tuple(
    a for a in ATTRIBUTES if a not in _CANONICAL_ORDER))}


def zero_shot_prompts(attribute: str) -> tuple[list[str], list[str]]:
    """Prompts saying a face HAS `attribute` and prompts saying it has NOT, in the captions' own words.

    Where English has no natural negative ("with high cheekbones"), the negatives are plain prompts
    ("a photo of a person"): the classifier then asks "closer to the attribute than to no mention?".
    """
    if attribute not in PHRASES:
        raise CourseError(f"unknown attribute {attribute!r}; choose one of {', '.join(ATTRIBUTES)}")
    spec = PHRASES[attribute]

    def prompts(phrases: Sequence[str]) -> list[str]:
        out = []
        for phrase in phrases:
            slot = phrase_slot(attribute, phrase)
            if slot == "noun":
                out += [f"a photo of {_article(phrase)} {phrase}", f"a portrait of {_article(phrase)} {phrase}"]
            elif slot == "photo":
                out.append(f"{_article(phrase)} {phrase} photo of a person")
            elif slot == "adjective":
                out.append(f"a photo of {_article(phrase)} {phrase} person")
            else:
                out.append(f"a photo of a person {phrase}")
        return out

    negatives = prompts(spec.absent) if spec.absent else ["a photo of a person", "a portrait of a person"]
    return prompts(spec.present), negatives


# ------------------------------------------------------------------------------------------ parsing
def _tokens(text: str) -> list[str]:
    """Lower-case words and punctuation; hyphens and apostrophes split words ("clean-shaven", "o'clock")."""
    return re.findall(r"[a-z0-9]+|[,.;:!?()]", text.lower().replace("n't", " not"))


def _core(phrase: str) -> tuple[tuple[str, ...], int]:
    """The key words of a phrase and how many negations were stripped from its front."""
    words, negations = _tokens(phrase), 0
    while words and (words[0] in FILLERS or words[0] in NEGATIONS):
        negations += words.pop(0) in NEGATIONS
    return tuple(words), negations


def _build_forms() -> dict[tuple[str, ...], tuple[str, bool]]:
    """Key words -> (attribute, present?), from PHRASES and PARSE_ONLY; two meanings for one form is a bug."""
    forms: dict[tuple[str, ...], tuple[str, bool]] = {}
    sources = list(PHRASES.items()) + [(name, _p(*words)) for name, words in PARSE_ONLY.items()]
    for name, spec in sources:
        for value, phrases in ((True, spec.present), (False, spec.absent)):
            for phrase in phrases:
                words, negations = _core(phrase)
                meaning = (name, value ^ (negations % 2 == 1))
                if forms.setdefault(words, meaning) != meaning:
                    raise ValueError(f"{' '.join(words)!r} means both {forms[words]} and {meaning}")
    return forms


FORMS = _build_forms()
_LONGEST = max(len(form) for form in FORMS)


def _mentions(text: str) -> list[tuple[str, bool, str]]:
    """(attribute, present?, the words that said so) in reading order."""
    words, found, negation, i = _tokens(text), [], None, 0
    while i < len(words):
        if words[i] in NEGATIONS:
            negation, i = words[i], i + 1
            continue
        for length in range(min(_LONGEST, len(words) - i), 0, -1):  # the longest form wins
            form = tuple(words[i:i + length])
            if form in FORMS:
                name, value = FORMS[form]
                said = " ".join(form)
                found.append((name, value ^ (negation is not None), f"{negation} {said}" if negation else said))
                i += length
                if not (i < len(words) and words[i] in ("or", "nor")):  # "no glasses or hat" negates both
                    negation = None
                break
        else:
            if words[i] not in FILLERS and words[i] != "or":  # a negation reaches over fillers (and "or") only
                negation = None
            i += 1
    return found


def parse_prompt(text: str) -> dict[str, bool]:
    """The attributes a prompt mentions: True = asked for, False = explicitly excluded; {} when none.

    "a smiling woman with blond hair" -> {Blond_Hair: True, Male: False, Smiling: True}. Raises
    ContradictoryPrompt for an attribute asked both ways ("a man who is a woman", "smiling, not smiling")
    and for two hair colours or two hair textures at once. A negation covers the next attribute and, after
    "or"/"nor", the one after it ("no glasses or hat"); "and" ends it ("without glasses and with a hat").
    """
    seen: dict[str, tuple[bool, str]] = {}
    for name, value, words in _mentions(text):
        if name in seen and seen[name][0] != value:
            raise ContradictoryPrompt(f"{' '.join(text.split())!r} contradicts itself: {seen[name][1]!r} and "
                                      f"{words!r} ({name}); keep one of them")
        seen.setdefault(name, (value, words))
    for group in EXCLUSIVE:
        asked = [name for name in group if seen.get(name, (False,))[0]]
        if len(asked) > 1:
            raise ContradictoryPrompt(f"{' '.join(text.split())!r} contradicts itself: "
                                      f"{seen[asked[0]][1]!r} and {seen[asked[1]][1]!r} (a face has one "
                                      f"{'hair colour' if 'Black_Hair' in group else 'hair texture'}); keep one")
    return {name: seen[name][0] for name in ATTRIBUTES if name in seen}


def describe_vocabulary() -> str:
    """One line listing what prompts can ask for, for error messages ("the model understands: ...")."""
    words = []
    for name, spec in PHRASES.items():
        present = " ".join(_core(spec.present[0])[0])
        words.append(f"{present}/{' '.join(_core(spec.absent[0])[0])}" if spec.trait_when_absent else present)
    return ("prompts can mention: " + ", ".join(words) +
            "; negate with no/not/without (e.g. 'a woman without glasses, not smiling')")


def prompt_for(wanted: dict[str, bool]) -> str:
    """A plain prompt that says exactly `wanted` ({attribute: present?}), e.g. from attribute toggles.

    {"Male": False, "Smiling": True, "Eyeglasses": False} -> "a photo of a smiling woman without glasses".
    An absence with no phrasing of its own is said with "not"/"without" ("not chubby", "without arched
    eyebrows"), so `parse_prompt(prompt_for(w)) == w` for every single attribute (tested).
    """
    unknown = [name for name in wanted if name not in PHRASES]
    if unknown:
        raise CourseError(f"unknown attribute {unknown[0]!r}; choose from {', '.join(ATTRIBUTES)}")
    noun = "person" if NOUN not in wanted else (PHRASES[NOUN].present[0] if wanted[NOUN] else PHRASES[NOUN].absent[0])
    said = []
    for name in sorted((n for n in wanted if n != NOUN), key=_CANONICAL_RANK.__getitem__):
        spec = PHRASES[name]
        if wanted[name]:
            phrase = spec.present[0]
        elif spec.absent:
            phrase = spec.absent[0]
        elif spec.present[0].startswith("with "):
            phrase = "without " + spec.present[0][len("with "):]
        else:
            phrase = "not " + spec.present[0]
        said.append((name, phrase))
    return _sentence(noun, said, "a photo of", None)
