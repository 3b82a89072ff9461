"""Template rows: command programs sampled over the rules file, phrased as requests in English and Chinese.

The thesis (section 5.1.1) had a model write 2,916 requests for hand-picked programs; its labels
included parts no segmenter produces and its commands were not checked. Here every row starts
from a program (one to three commands over the image's labels, as ``core/rules.json`` defines
their paras), is phrased by templates that say exactly that program (the words are in
:mod:`finetune.phrasing`), and carries the commands the contract's validation and merging
produce for it. Everything is seeded: a row is reproducible from its own seed
(:func:`template_row`), a batch from the batch seed (:func:`generate_template_rows`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.commands import merge, validate
from core.rules import Rules, load_rules
from finetune import phrasing as ph
from finetune.dataset_rows import LANGUAGES, DatasetRow

#: How often each command starts a clause (advice only ever stands alone, see :data:`ADVICE_SHARE`).
COMMAND_WEIGHTS: dict[str, float] = {"change": 0.21, "recolor": 0.18, "remove": 0.12, "adjust": 0.16, "blur": 0.11,
                                     "face": 0.10, "style": 0.06, "instruct": 0.06}
#: The share of rows that ask for a suggestion (a lone `advice` command).
ADVICE_SHARE = 0.03
#: How many commands a program has: 1, 2 or 3, with these weights.
PROGRAM_LENGTHS = ((1, 0.5), (2, 0.35), (3, 0.15))
#: The embedded segmenter's labels (the rest of the time the SegFormer human-parsing set).
EMBEDDED_SHARE = 0.3

_REMOVABLE = ("Hat", "Sunglasses", "Bag", "Scarf", "Belt")
_WORN = frozenset({("Hat",), ("Sunglasses",), ("Scarf",), ("Belt",)})
_RECOLORABLE = ("Upper-clothes", "Pants", "Skirt", "Dress", "Hat", "Bag", "Scarf", "Belt", "Hair", "Lips", "Eyes",
                "Left-shoe+Right-shoe", "Left-shoe", "Right-shoe")
_CHANGEABLE = tuple(ph.PROMPTS)
_FACE_PARTS = frozenset({"Lips", "Eyes", "Eyebrows"})
_ADJUSTABLE = ("Background", "Hair", "Upper-clothes", "Pants", "Skirt", "Dress")
_BLURRABLE = (("Background", 0.85), ("Face", 0.1), ("Bag", 0.05))


class TemplateError(RuntimeError):
    """A template produced a program the contract rejects: a bug in the tables, never a data problem."""


@dataclass(frozen=True)
class _Clause:
    item: dict[str, Any]
    text: str
    template: str
    targets: tuple[str, ...] = ()


def _forms(command: str, language: str) -> tuple[str, ...]:
    """Every phrasing form of a command in a language, in a fixed order (its index is the template's k)."""
    en = language == "en"
    if command == "remove":
        return ph.REMOVE_EN + ph.REMOVE_WORN_EN if en else ph.REMOVE_ZH
    if command == "recolor":
        return ph.RECOLOR_EN if en else ph.RECOLOR_ZH
    if command == "change":
        return ph.CHANGE_EN + ph.PLACE_EN if en else ph.CHANGE_ZH + ph.PLACE_ZH
    if command == "blur":
        return ph.BLUR_EN if en else ph.BLUR_ZH
    if command == "style":
        return ph.STYLE_EN if en else ph.STYLE_ZH
    if command == "instruct":
        return ph.INSTRUCT_EN if en else ph.INSTRUCT_ZH
    if command == "face":
        return tuple(en_text if en else zh_text for en_text, zh_text, _ in ph.FACE)
    if command == "advice":
        return tuple(en_text if en else zh_text for en_text, zh_text, _ in ph.ADVICE)
    if command == "adjust":
        tonal = tuple(form for en_forms, zh_forms in ph.ADJUST.values() for form in (en_forms if en else zh_forms))
        return tonal + (ph.MONOCHROME_EN if en else ph.MONOCHROME_ZH)
    raise KeyError(command)


def template_ids(rules: Rules | None = None) -> list[str]:
    """Every template as ``<command>/<lang>/<k>`` (what a row's origin names), for the Datasets page."""
    rules = rules or load_rules()
    return [f"{command}/{lang}/{k}" for command in rules.commands for lang in LANGUAGES
            for k in range(len(_forms(command, lang)))]


def sample_labels(rng: random.Random, rules: Rules | None = None) -> tuple[str, ...]:
    """A realistic label set: a person photo as a human-parsing segmenter or the embedded one labels it."""
    rules = rules or load_rules()
    found: set[str] = {"Background"}
    if rng.random() < EMBEDDED_SHARE:
        found |= {"Face", "Lips", "Eyes", "Eyebrows"}
        for label, p in (("Hair", 0.97), ("Neck", 0.9), ("Upper-clothes", 0.9), ("Pants", 0.6)):
            if rng.random() < p:
                found.add(label)
        if rng.random() < 0.85:
            found |= {"Left-arm", "Right-arm"}
        if rng.random() < 0.6:
            found |= {"Left-leg", "Right-leg"}
    else:
        for label, p in (("Face", 0.995), ("Hair", 0.99), ("Hat", 0.26), ("Sunglasses", 0.32), ("Bag", 0.59),
                         ("Belt", 0.2), ("Scarf", 0.07)):
            if rng.random() < p:
                found.add(label)
        bottom = rng.choices(("Pants", "Skirt", "Dress", "Dress+top", ""), (0.55, 0.18, 0.1, 0.07, 0.1))[0]
        found |= {"Upper-clothes"} if bottom != "Dress" and rng.random() < 0.95 else set()
        found |= {b for b in bottom.replace("top", "Upper-clothes").split("+") if b}
        if rng.random() < 0.9:
            found |= {"Left-arm", "Right-arm"}
        if rng.random() < 0.62:
            found |= {"Left-leg", "Right-leg"}
        shoes = rng.random()
        found |= {"Left-shoe", "Right-shoe"} if shoes < 0.81 else {"Left-shoe"} if shoes < 0.83 else set()
    return tuple(label for label in rules.default_labels if label in found)


def _group(key: str) -> tuple[str, ...]:
    return tuple(key.split("+"))


def _part(rng: random.Random, group: tuple[str, ...], language: str) -> str:
    for labels, en, zh in ph.PART_WORDS:
        if labels == group:
            return rng.choice(en if language == "en" else zh)
    raise KeyError(group)


def _parts(rng: random.Random, groups: Sequence[tuple[str, ...]], language: str) -> str:
    words = [_part(rng, g, language) for g in groups]
    if language == "en":
        return " and ".join(words)
    return rng.choice(("和", "、")).join(words)


def _available(keys: Sequence[str], labels: Sequence[str], used: set[str]) -> list[tuple[str, ...]]:
    """Target groups whose labels are all present and not yet acted on by an earlier clause."""
    out = []
    for key in keys:
        group = _group(key)
        if all(label in labels for label in group) and not used & set(group):
            out.append(group)
    return out


def _fill(form: str, rng: random.Random, language: str, level: str = "normal", **values: str) -> str:
    words = {key: rng.choice(options) for key, options in ph.INTENSITY[level].items()}
    return form.format(**words, **values)


def _pick_form(rng: random.Random, command: str, language: str, allowed: Callable[[int, str], bool] | None = None
               ) -> tuple[int, str]:
    forms = list(enumerate(_forms(command, language)))
    if allowed is not None:
        forms = [(k, f) for k, f in forms if allowed(k, f)]
    return rng.choice(forms)


def _level(rng: random.Random) -> str:
    return rng.choices(("normal", "low", "high"), (0.5, 0.25, 0.25))[0]


# --- one clause per command ---------------------------------------------------------------------


def _remove(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    groups = _available(_REMOVABLE, labels, used)
    if not groups:
        return None
    chosen = rng.sample(groups, 2 if len(groups) > 1 and rng.random() < 0.2 else 1)
    worn = all(g in _WORN for g in chosen)
    k, form = _pick_form(rng, "remove", language, lambda _k, f: worn or not f.startswith("take off"))
    targets = tuple(label for g in chosen for label in g)
    text = form.format(t=_parts(rng, chosen, language))
    return _Clause({"command": "remove", "paras": [list(targets)]}, text, f"remove/{language}/{k}", targets)


def _recolor(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    groups = _available(_RECOLORABLE, labels, used)
    if ("Left-shoe", "Right-shoe") in groups and rng.random() < 0.8:
        groups = [g for g in groups if g not in (("Left-shoe",), ("Right-shoe",))]
    if not groups:
        return None
    chosen = rng.sample(groups, 1)
    # "the hat and the scarf"; face parts and single shoes stand alone ("唇" alone reads as a retouch, and
    # "the left shoe and the right shoe" is "both shoes").
    alone = _FACE_PARTS | {"Left-shoe", "Right-shoe"}
    pairable = [g for g in groups if not set(g) & (alone | set(chosen[0]))]
    if rng.random() < 0.15 and len(chosen[0]) == 1 and not set(chosen[0]) & alone and pairable:
        chosen.append(rng.choice(pairable))
    en_word, zh_word, color = rng.choice([c for c in ph.COLORS if c[0 if language == "en" else 1]])
    if language == "en" and rng.random() < 0.15 and " " not in en_word:
        en_word = rng.choice(("bright ", "deep ")) + en_word
    k, form = _pick_form(rng, "recolor", language)
    targets = tuple(label for g in chosen for label in g)
    text = form.format(t=_parts(rng, chosen, language), c=en_word if language == "en" else zh_word)
    return _Clause({"command": "recolor", "paras": [list(targets), color]}, text, f"recolor/{language}/{k}", targets)


def _change(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    groups = _available(_CHANGEABLE, labels, used)
    if not groups:
        return None
    weights = [3.0 if g == ("Background",) else 1.0 for g in groups]
    group = rng.choices(groups, weights)[0]
    prompt_en, prompt_zh = rng.choice(ph.PROMPTS["+".join(group)])
    place = group == ("Background",) and prompt_en in ph.PLACES
    n_plain = len(ph.CHANGE_EN if language == "en" else ph.CHANGE_ZH)
    k, form = _pick_form(rng, "change", language, lambda k, _f: k < n_plain or (place and rng.random() < 0.5))
    text = form.format(t=_part(rng, group, language), p=prompt_en if language == "en" else prompt_zh)
    return _Clause({"command": "change", "paras": [list(group), prompt_en]}, text, f"change/{language}/{k}", group)


def _blur(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    options = [(label, w) for label, w in _BLURRABLE if label in labels and label not in used]
    if not options:
        return None
    target = rng.choices([o[0] for o in options], [o[1] for o in options])[0]
    level = _level(rng)
    k, form = _pick_form(rng, "blur", language)
    text = _fill(form, rng, language, level, t=_part(rng, (target,), language))
    strength = round(min(1.0, ph.DEFAULT_BLUR * ph.INTENSITY_SCALE[level]), 3)
    return _Clause({"command": "blur", "paras": [[target], strength]}, text, f"blur/{language}/{k}", (target,))


def _adjust(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    en = language == "en"
    parts = _available(_ADJUSTABLE, labels, used)
    whole = not parts or rng.random() < 0.6
    target = () if whole else rng.choice(parts)
    words = rng.choice(ph.WHOLE_IMAGE_EN if en else ph.WHOLE_IMAGE_ZH) if whole else _part(rng, target, language)
    tonal = [(prop, sign, form) for (prop, sign), forms in ph.ADJUST.items() for form in forms[0 if en else 1]]
    mono = ph.MONOCHROME_EN if en else ph.MONOCHROME_ZH
    if whole and rng.random() < 0.12:
        k = len(tonal) + rng.randrange(len(mono))
        text, prop, amount = mono[k - len(tonal)].format(t=words), "saturation", -1.0
    else:
        k = rng.randrange(len(tonal))
        prop, sign, form = tonal[k]
        level = _level(rng)
        text = _fill(form, rng, language, level, t=words)
        amount = round(sign * ph.DEFAULT_AMOUNT * ph.INTENSITY_SCALE[level], 3)
    return _Clause({"command": "adjust", "paras": [prop, amount, list(target)]}, text, f"adjust/{language}/{k}",
                   target)


def _face(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    if "Face" not in labels or "Face" in used:
        return None
    k = rng.randrange(len(ph.FACE))
    en_text, zh_text, prompt = ph.FACE[k]
    return _Clause({"command": "face", "paras": [prompt]}, en_text if language == "en" else zh_text,
                   f"face/{language}/{k}", ("Face",))


def _style(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    en_text, zh_text, style = rng.choice(ph.STYLES)
    k, form = _pick_form(rng, "style", language)
    text = form.format(s=en_text, sa=style) if language == "en" else form.format(s=zh_text)
    return _Clause({"command": "style", "paras": [style]}, text, f"style/{language}/{k}")


def _instruct(rng: random.Random, labels: Sequence[str], language: str, used: set[str]) -> _Clause | None:
    en_text, zh_text, instruction = rng.choice(ph.INSTRUCT)
    k, form = _pick_form(rng, "instruct", language)
    text = form.format(p=en_text if language == "en" else zh_text)
    return _Clause({"command": "instruct", "paras": [instruction]}, text, f"instruct/{language}/{k}")


_MAKERS: dict[str, Callable[[random.Random, Sequence[str], str, set[str]], _Clause | None]] = {
    "remove": _remove, "recolor": _recolor, "change": _change, "blur": _blur, "adjust": _adjust, "face": _face,
    "style": _style, "instruct": _instruct,
}


def _program(rng: random.Random, labels: Sequence[str], language: str, rules: Rules) -> list[_Clause]:
    """One to three clauses; whole-image commands appear at most once, and no part is acted on twice."""
    if rng.random() < ADVICE_SHARE and "advice" in rules.commands:
        k = rng.randrange(len(ph.ADVICE))
        en_text, zh_text, suggestion = ph.ADVICE[k]
        return [_Clause({"command": "advice", "paras": [suggestion]}, en_text if language == "en" else zh_text,
                        f"advice/{language}/{k}")]
    names = [n for n in COMMAND_WEIGHTS if n in rules.commands]
    length = rng.choices([n for n, _ in PROGRAM_LENGTHS], [w for _, w in PROGRAM_LENGTHS])[0]
    clauses: list[_Clause] = []
    used: set[str] = set()
    once = {"style", "instruct", "face"}
    for _ in range(length * 4):
        if len(clauses) == length:
            break
        name = rng.choices(names, [COMMAND_WEIGHTS[n] for n in names])[0]
        if name in once and any(c.item["command"] == name for c in clauses):
            continue
        if name == "adjust" and any(c.item["command"] == "adjust" for c in clauses):
            continue  # two tonal clauses in a row read as one restated change ("darker, much darker")
        clause = _MAKERS[name](rng, labels, language, used)
        if clause is None:
            continue
        clauses.append(clause)
        used |= set(clause.targets)
    return clauses


def _request(rng: random.Random, clauses: Sequence[_Clause], language: str) -> str:
    if clauses[0].item["command"] == "advice":  # a question as it is: no "please" before it
        return clauses[0].text[:1].upper() + clauses[0].text[1:] if rng.random() < 0.6 else clauses[0].text
    if language == "en":
        text = clauses[0].text
        for clause in clauses[1:]:
            joiner = rng.choice(ph.JOIN_EN)
            text += joiner + (clause.text[:1].upper() + clause.text[1:] if joiner.endswith(". Then ") else clause.text)
        text = rng.choice(ph.PREFIX_EN) + text
        text = (text[:1].upper() + text[1:]) if rng.random() < 0.6 else text
        if text.lower().startswith(("could", "can")):
            return text + rng.choice(("?", ""))
        return text + ("" if text.endswith("?") else rng.choice(ph.SUFFIX_EN))
    text = rng.choice(ph.PREFIX_ZH) + clauses[0].text
    for clause in clauses[1:]:
        text += rng.choice(ph.JOIN_ZH) + clause.text
    return text + ("" if text.endswith("？") else rng.choice(ph.SUFFIX_ZH))


def canonical_commands(items: Sequence[dict[str, Any]], labels: Sequence[str], rules: Rules | None = None
                       ) -> list[dict[str, Any]]:
    """The items as the contract would run them: validated against the labels, then merged (first place kept).

    Raises :class:`TemplateError` when an item is invalid: templates must only write valid programs.
    """
    rules = rules or load_rules()
    outcome = validate(list(items), labels, rules)
    if outcome.rejections:
        reasons = "; ".join(r.reason for r in outcome.rejections)
        raise TemplateError(f"A template wrote an invalid program {list(items)!r}: {reasons}")
    return [c.to_wire() for c in merge(outcome.commands, rules)]


def row_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th row of a batch: a stable 48-bit hash of both (no Python hash randomisation)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=6).digest(), "big")


def template_row(seed: int, *, languages: Sequence[str] = LANGUAGES, rules: Rules | None = None) -> DatasetRow:
    """The one row a row seed makes (what :func:`generate_template_rows` calls per row)."""
    rules = rules or load_rules()
    rng = random.Random(seed)
    language = rng.choice(list(languages))
    labels = sample_labels(rng, rules)
    clauses = _program(rng, labels, language, rules)
    while not clauses:  # a label set with nothing a sampled command can act on: sample again
        clauses = _program(rng, labels, language, rules)
    commands = canonical_commands([c.item for c in clauses], labels, rules)
    origin = "template:" + "+".join(c.template for c in clauses)
    return DatasetRow(request=_request(rng, clauses, language), language=language, labels=labels,
                      commands=tuple(commands), source="template", origin=origin, seed=seed)


def generate_template_rows(n: int, *, seed: int, languages: Sequence[str] = LANGUAGES,
                           rules: Rules | None = None) -> list[DatasetRow]:
    """``n`` template rows, the same for the same seed, languages and rules file."""
    if n < 0:
        raise ValueError(f"The number of rows must be zero or more, not {n}.")
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages:
        raise ValueError(f"Template languages are among {', '.join(LANGUAGES)}; got {list(languages)!r}.")
    rules = rules or load_rules()
    return [template_row(row_seed(seed, i), languages=languages, rules=rules) for i in range(n)]
