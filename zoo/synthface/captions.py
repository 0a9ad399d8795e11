"""Captions of the synthetic face world, generated from the ground-truth parameters.

Each caption names a random subset of the face's attributes in random order with varied phrasings and synonyms
("a smiling man with purple hair wearing sunglasses", "portrait of a bald person wearing a hat",
"a zombie face with a beard"), so the two CLIPs trained on renders + captions learn every word the editing
suites use. `EDIT_PROMPTS` and `DOMAIN_PROMPTS` are those suite prompts; a test checks that every one of
their words occurs in generated captions. `wrap_in_template` puts a caption into one of the 79 CLIP prompt
templates ("a bad photo of a {}.").

Captions are deterministic: caption i of a batch depends only on the face's parameters, `seed` and i.
Vocabulary notes: captions share no content word with the templates (photo, sketch, drawing, art, bright,
cropped, ...) except "black" (a hair colour; the templates say "black and white photo"); grey hair is
"grey"/"gray", never "white". Shared function words: a, and, in, of.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import NamedTuple

from .domains import DOMAIN_NAMES, DOMAINS
from .params import ATTRIBUTE_SPECS, IDENTITY_PARAMS, FaceParams

__all__ = ["EditPrompt", "EDIT_PROMPTS", "DOMAIN_PROMPTS", "caption", "captions", "caption_vocabulary",
           "wrap_in_template", "words"]



class EditPrompt(NamedTuple):
    """A text edit: set `attribute` to `value`; `target` describes the edited face, `neutral` the unedited one
    (the StyleCLIP global-direction / NADA direction is target minus neutral)."""

    attribute: str
    value: str
    target: str
    neutral: str


# ---------------------------------------------------------------------------------------------- phrase tables
HAIR_WORDS = {
    "black": ["black"], "brown": ["brown"], "blond": ["blond", "blonde"], "red": ["red", "ginger"],
    "grey": ["grey", "gray"], "blue": ["blue"], "purple": ["purple", "violet"], "green": ["green"],
    "pink": ["pink"],
}
STYLE_WORDS = {"short": ["short", "very short"], "long": ["long"], "curly": ["curly"]}
BALD_PRE = ["bald"]
BALD_POST = ["with a shaved head", "with no hair"]
MOHAWK_POST = ["with a {c} mohawk", "with a mohawk", "with a {c} mohawk haircut", "with a mohawk haircut"]
SMILE_PRE = {"frowning": ["frowning", "sad", "unhappy"], "neutral": ["neutral", "serious", "calm"],
             "smiling": ["smiling", "happy", "cheerful"]}
SMILE_POST = {"frowning": ["with a frown", "with a sad expression"],
              "neutral": ["with a neutral expression", "with a serious expression"],
              "smiling": ["with a smile", "with a happy expression"]}
BIG_SMILE = ["grinning", "laughing"]  # smile > 0.75
BIG_SMILE_POST = ["with a big smile", "with a wide grin"]
EYEWEAR = {"glasses": ["wearing glasses", "with glasses", "in glasses", "with eyeglasses", "wearing spectacles"],
           "sunglasses": ["wearing sunglasses", "with sunglasses", "in sunglasses", "with shades",
                          "wearing shades"]}
FACIAL_HAIR_PRE = {"beard": ["bearded"], "moustache": ["moustached"]}
FACIAL_HAIR_POST = {"beard": ["with a beard", "with a full beard", "wearing a beard"],
                    "moustache": ["with a moustache", "with a mustache", "wearing a moustache"]}
EYES_POST = {"closed": ["with closed eyes", "with eyes closed", "with eyes shut", "with shut eyes"],
             "open": ["with open eyes", "with eyes open"]}
LIPSTICK_POST = ["wearing lipstick", "with lipstick", "with vivid lipstick", "wearing red lipstick"]
HAT_POST = {"hat": ["wearing a hat", "in a hat", "with a hat", "wearing a felt hat", "in a brimmed hat"],
            "cap": ["wearing a cap", "in a cap", "with a cap", "wearing a baseball cap", "in a baseball cap"]}
AGE_PRE = {"young": ["young", "youthful"], "old": ["old", "elderly", "aged"]}
AGE_POST = {"young": [], "old": ["in old age"]}
BACKGROUND_POST = ["on a {b} background", "against a {b} background", "in front of a {b} background",
                   "with a {b} backdrop"]
NOUNS_MASC = ["man", "guy", "gentleman"]
NOUNS_FEM = ["woman", "lady"]
NOUNS_ANY = ["person", "face", "person", "face", "head"]

# Frames per domain: {np} is the noun phrase with its article, {bare} without it.
DOMAIN_FRAMES = {
    "photo": ["{np}", "{np}", "portrait of {np}", "a portrait of {np}", "a realistic portrait of {np}",
              "a realistic {bare}", "{np}, realistic", "a realistic picture of {np}", "a picture of {np}"],
    "pencil": ["a pencil portrait of {np}", "{np} in pencil", "pencil portrait of {np}", "a pencil study of {np}",
               "{np}, pencil on paper"],
    "comic": ["a comic {bare}", "{np} in comic style", "a comic portrait of {np}", "comic style {bare}",
              "{np} from a comic"],
    "zombie": ["a zombie {bare}", "{np} as a zombie", "a zombie version of {np}", "zombie {bare}"],
    "mosaic": ["a mosaic of {np}", "a mosaic {bare}", "{np} as a tile mosaic", "a mosaic portrait of {np}"],
    "watercolor": ["a watercolor portrait of {np}", "a watercolor of {np}", "{np} in watercolor",
                   "a watercolor {bare}"],
    "neon": ["a neon {bare}", "{np} in neon lights", "a neon portrait of {np}", "{np} made of neon"],
    "marble": ["a marble statue of {np}", "a marble {bare}", "{np} carved in marble", "a statue of {np}",
               "a marble bust of {np}"],
}
assert set(DOMAIN_FRAMES) == set(DOMAIN_NAMES)

# Inclusion probability of each attribute phrase when the attribute has a non-default value.
P_MENTION = {"hair_color": 0.75, "hair_style": 0.7, "smile": 0.65, "eyewear": 0.85, "facial_hair": 0.85,
             "eyes_closed": 0.85, "lipstick": 0.85, "hat": 0.85, "age": 0.7, "background": 0.45}
P_MENTION_DEFAULT = {"eyes_closed": 0.08, "age": 0.3}  # "with open eyes", "young"
MAX_POST = (2, 3, 3, 4, 4, 5)  # how many post-noun phrases a caption keeps at most
P_SINGLE = 0.2  # share of captions that name one attribute only ("a face with purple hair")

# ---------------------------------------------------------------------------------------------- prompts
EDIT_PROMPTS: list[EditPrompt] = (
    [EditPrompt("hair_color", c, f"a face with {c} hair", "a face") for c in ATTRIBUTE_SPECS["hair_color"].values]
    + [EditPrompt("hair_style", "bald", "a bald person", "a person"),
       EditPrompt("hair_style", "short", "a person with short hair", "a person"),
       EditPrompt("hair_style", "long", "a person with long hair", "a person"),
       EditPrompt("hair_style", "curly", "a person with curly hair", "a person"),
       EditPrompt("hair_style", "mohawk", "a person with a mohawk", "a person"),
       EditPrompt("smile", "smiling", "a smiling face", "a face"),
       EditPrompt("smile", "frowning", "a frowning face", "a face"),
       EditPrompt("smile", "neutral", "a neutral face", "a face"),
       EditPrompt("eyewear", "glasses", "a face with glasses", "a face"),
       EditPrompt("eyewear", "sunglasses", "a face with sunglasses", "a face"),
       EditPrompt("facial_hair", "beard", "a man with a beard", "a man"),
       EditPrompt("facial_hair", "moustache", "a man with a moustache", "a man"),
       EditPrompt("eyes_closed", "closed", "a face with closed eyes", "a face"),
       EditPrompt("lipstick", "lipstick", "a woman wearing lipstick", "a woman"),
       EditPrompt("hat", "hat", "a person wearing a hat", "a person"),
       EditPrompt("hat", "cap", "a person wearing a cap", "a person"),
       EditPrompt("age", "old", "an old person", "a person"),
       EditPrompt("age", "young", "a young person", "a person")]
    + [EditPrompt("background", b, f"a face on {'an' if b[0] in 'aeiou' else 'a'} {b} background", "a face")
       for b in ATTRIBUTE_SPECS["background"].values]
)
# (domain, target text, source text): the NADA prompts; the source is always the photo domain's prompt.
DOMAIN_PROMPTS: list[tuple[str, str, str]] = [
    (d, DOMAINS[d].prompt, DOMAINS["photo"].prompt) for d in DOMAIN_NAMES if d != "photo"]


# ---------------------------------------------------------------------------------------------- generator
def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _noun(masc: float, rng: random.Random) -> str:
    if masc > 0.6 and rng.random() < 0.55:
        return rng.choice(NOUNS_MASC)
    if masc < 0.4 and rng.random() < 0.55:
        return rng.choice(NOUNS_FEM)
    return rng.choice(NOUNS_ANY)


def _face_values(params: FaceParams, labels: dict, i: int) -> dict[str, object]:
    v: dict[str, object] = {name: spec.values[int(labels[name][i])] for name, spec in ATTRIBUTE_SPECS.items()}
    v["smile_value"] = float(params.attrs["smile"][i])
    v["masc"] = float(params.identity[i, IDENTITY_PARAMS.index("masculinity")])
    v["domain"] = DOMAIN_NAMES[int(params.domain[i])]
    return v


def _phrases(v: dict[str, object], rng: random.Random) -> tuple[list[str], list[str]]:
    """(pre-noun adjectives, post-noun phrases) for a random subset of the attributes."""
    pre: list[str] = []
    post: list[str] = []

    def mention(name: str, default: bool = False) -> bool:
        p = P_MENTION_DEFAULT.get(name, 0.0) if default else P_MENTION[name]
        return rng.random() < p

    # hair (colour and style combine into one phrase)
    style, colour = v["hair_style"], v["hair_color"]
    c = rng.choice(HAIR_WORDS[colour]) if mention("hair_color") else None
    show_style = mention("hair_style")
    if style == "bald":
        if show_style:
            (pre.append(rng.choice(BALD_PRE)) if rng.random() < 0.6 else post.append(rng.choice(BALD_POST)))
    elif style == "mohawk":
        if show_style:
            forms = [f for f in MOHAWK_POST if ("{c}" in f) == (c is not None)]
            post.append(rng.choice(forms).format(c=c))
        elif c:
            post.append(f"with {c} hair")
    else:
        st = rng.choice(STYLE_WORDS[style]) if show_style else None
        if st or c:
            post.append("with " + " ".join(w for w in (st, c) if w) + " hair")
    # expression
    smile = v["smile"]
    if mention("smile"):
        big = smile == "smiling" and v["smile_value"] > 0.75
        if rng.random() < 0.6:
            pre.append(rng.choice(SMILE_PRE[smile] + (BIG_SMILE if big else [])))
        else:
            post.append(rng.choice(SMILE_POST[smile] + (BIG_SMILE_POST if big else [])))
    # accessories and the rest
    if v["eyewear"] != "none" and mention("eyewear"):
        post.append(rng.choice(EYEWEAR[v["eyewear"]]))
    fh = v["facial_hair"]
    if fh != "none" and mention("facial_hair"):
        (pre.append(rng.choice(FACIAL_HAIR_PRE[fh])) if rng.random() < 0.3
         else post.append(rng.choice(FACIAL_HAIR_POST[fh])))
    eyes = v["eyes_closed"]
    if mention("eyes_closed", default=eyes == "open"):
        post.append(rng.choice(EYES_POST[eyes]))
    if v["lipstick"] == "lipstick" and mention("lipstick"):
        post.append(rng.choice(LIPSTICK_POST))
    if v["hat"] != "none" and mention("hat"):
        post.append(rng.choice(HAT_POST[v["hat"]]))
    age = v["age"]
    if mention("age", default=age == "young"):
        forms = AGE_POST[age]
        if forms and rng.random() < 0.2:
            post.append(rng.choice(forms))
        else:
            pre.append(rng.choice(AGE_PRE[age]))
    if mention("background"):
        post.append(rng.choice(BACKGROUND_POST).format(b=v["background"]))
    rng.shuffle(pre)
    rng.shuffle(post)
    if pre + post and rng.random() < P_SINGLE:  # short captions: a single attribute phrase
        k = rng.randrange(len(pre) + len(post))
        return (pre[k:k + 1], []) if k < len(pre) else ([], post[k - len(pre):k - len(pre) + 1])
    keep = rng.choice(MAX_POST)  # long lists are cut: every attribute is sometimes left out
    return pre, post[:keep]


def caption(params: FaceParams, i: int, seed: int = 0) -> str:
    """The caption of face i (deterministic in the face's parameters, seed and i)."""
    return _caption(params, params.labels(), i, seed)


def captions(params: FaceParams, seed: int = 0) -> list[str]:
    """Captions of every face of the batch (caption i equals `caption(params, i, seed)`)."""
    labels = params.labels()
    return [_caption(params, labels, i, seed) for i in range(len(params))]


def _caption(params: FaceParams, labels: dict, i: int, seed: int) -> str:
    rng = random.Random(seed * 1_000_003 + i)
    v = _face_values(params, labels, i)
    pre, post = _phrases(v, rng)
    noun = _noun(v["masc"], rng)
    bare = " ".join(pre + [noun])
    if post:
        if len(post) > 1 and rng.random() < 0.4:
            tail = ", ".join(post[:-1]) + " and " + post[-1]
        else:
            tail = " ".join(post)
        bare = f"{bare} {tail}"
    frame = rng.choice(DOMAIN_FRAMES[v["domain"]])
    return _fix_articles(frame.format(np=_article(bare), bare=bare))


_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens of a text (letters only)."""
    return _WORD.findall(text.lower())


def _fix_articles(text: str) -> str:
    return re.sub(r"\b([Aa]) ([aeiouAEIOU])", lambda m: m.group(1) + "n " + m.group(2), text)


@lru_cache(maxsize=1)
def caption_vocabulary() -> frozenset[str]:
    """Every word the caption generator can emit."""
    texts: list[str] = []
    for table in (HAIR_WORDS, STYLE_WORDS, SMILE_PRE, SMILE_POST, EYEWEAR, FACIAL_HAIR_PRE, FACIAL_HAIR_POST,
                  EYES_POST, HAT_POST, AGE_PRE, AGE_POST, DOMAIN_FRAMES):
        for forms in table.values():
            texts.extend(forms)
    texts += BALD_PRE + BALD_POST + MOHAWK_POST + BIG_SMILE + BIG_SMILE_POST + LIPSTICK_POST + BACKGROUND_POST
    texts += NOUNS_MASC + NOUNS_FEM + NOUNS_ANY + list(ATTRIBUTE_SPECS["background"].values)
    texts += ["a an with hair and"]
    vocab: set[str] = set()
    for t in texts:
        vocab.update(w for w in words(re.sub(r"\{[a-z]+\}", " ", t)))
    return frozenset(vocab)


# ---------------------------------------------------------------------------------------------- templates
def _templates() -> list[str]:
    from zoo.clip import load_templates  # the one place template files are read

    return load_templates()


def wrap_in_template(caption_text: str, rng: random.Random | None = None, template: str | None = None) -> str:
    """Put a caption into a CLIP prompt template: "a smiling man" -> "a bad photo of a smiling man.". The
    caption's own leading article is dropped in favour of the template's, and a/an is fixed afterwards."""
    if template is None:
        template = (rng or random.Random(0)).choice(_templates())
    body = re.sub(r"^(a|an|the)\s+", "", caption_text.strip(), flags=re.IGNORECASE)
    return _fix_articles(template.format(body))
