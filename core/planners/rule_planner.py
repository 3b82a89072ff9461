"""The offline planner: a deterministic bilingual (English + Chinese) parser from a request to commands.

It needs no model, no network and no GPU, so ChatEdit edits on a laptop out of the box.
It reads a request clause by clause (split at punctuation and at conjunctions that join
actions), finds in each clause an action (remove, blur, tonal adjustment, style, face
retouch, change or recolour, add; a complaint such as "it's too dark" is read as the opposite
adjustment) and the parts it acts on, and writes the command the contract defines for it.
Two promises: it never names a part the image does not have, and a clause it cannot read is
reported back by name with the reason, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from core.colors import InvalidColor, parse_color
from core.commands import validate
from core.describe import targets_text
from core.planners import lexicon as lx
from core.planners.base import (
    UNSUPPORTED_LANGUAGE,
    ChatTurn,
    Language,
    NotUnderstood,
    PlanResult,
    detect_language,
    say,
    summary_reply,
    unsupported_language,
)
from core.rules import Rules, load_rules

DEFAULT_AMOUNT = 0.3
DEFAULT_BLUR = 0.5
_CJK = re.compile(r"[\u3400-\u9fff]")


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


@cache
def _compiled() -> dict[str, re.Pattern[str]]:
    names = ("WHOLE_IMAGE", "PRONOUN", "LOW_INTENSITY", "HIGH_INTENSITY", "BLUR_WORDS", "REMOVE_WORDS", "FACE_WORDS",
             "STYLE_WORDS", "CHANGE_MARKERS_ZH", "CHANGE_VERBS_EN", "CHANGE_MARKERS_EN", "PUT_SOMEWHERE_EN",
             "RETOUCH_ZH", "ADD_ZH", "ADD_EN", "CLAUSE_SPLIT", "COLOR_FILLER", "PUT_SOMEWHERE_ZH", "FACE_RETOUCH",
             "SKIP_CLAUSE", "PART_JOIN", "MAKE_ZH", "LESSEN", "FAULT_WORDS", "COMPLAINT_MARKER", "COMPLAINT_COPULA",
             "TOO_MUCH", "TOO_LITTLE", "FACE_ATTRIBUTES", "LOOK_WORDS", "SIDE_BEFORE", "SIDE_AFTER")
    return {name: _rx(getattr(lx, name)) for name in names}


@cache
def _part_patterns() -> list[tuple[re.Pattern[str], list[list[str]]]]:
    person = [label for label in load_rules().default_labels if label != "Background"]
    return [(_rx(pattern), [person if group == [lx.PERSON] else group for group in groups])
            for pattern, groups in lx.PART_WORDS]


@cache
def _adjust_patterns() -> list[tuple[re.Pattern[str], str, int]]:
    return [(_rx(pattern), prop, sign) for pattern, prop, sign in lx.ADJUST_WORDS]


@cache
def _state_patterns() -> list[tuple[re.Pattern[str], str, int]]:
    return [(_rx(pattern), prop, sign) for pattern, prop, sign in lx.STATE_WORDS]


@cache
def _tone_nouns() -> list[tuple[re.Pattern[str], str]]:
    return [(_rx(pattern), prop) for pattern, prop in lx.TONE_NOUNS]


def complaint_adjustments(text: str) -> list[tuple[str, int]]:
    """The adjustments that undo what ``text`` complains about: "it's too dark" → (brightness, +1).

    A complaint names a state after "too"/太 ("the colors are too saturated"), a fault word after
    "is"/"looks" ("the image is blurry", "照片有点模糊了"), or a property with how much there is
    ("too much contrast", "对比度太低"). The adjustment is the state's opposite; a plain command
    ("make it darker", "把背景模糊") is not a complaint.
    """
    c = _compiled()
    found: dict[str, int] = {}
    if c["TOO_MUCH"].search(text) or c["TOO_LITTLE"].search(text):
        sign = -1 if c["TOO_MUCH"].search(text) else 1
        for pattern, prop in _tone_nouns():
            if pattern.search(text) and prop not in found:
                found[prop] = sign
    taken: list[tuple[int, int]] = []
    for pattern, prop, state in _state_patterns():
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            # "too" may stand a few words before its state; 太 stands right before it ("颜色也太淡").
            before = text[max(0, start - (4 if _CJK.match(match.group(0)) else 16)):start]
            marked = c["COMPLAINT_MARKER"].search(before)
            fault = c["FAULT_WORDS"].fullmatch(match.group(0)) or c["FAULT_WORDS"].match(text, start)
            if (marked or (fault and c["COMPLAINT_COPULA"].search(text))) and prop not in found:
                found[prop] = -state
    return list(found.items())


@dataclass(frozen=True)
class PartMention:
    """A part word in the text, resolved against the image: its labels, or the labels it lacks."""

    start: int
    end: int
    word: str
    labels: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass
class Clause:
    text: str
    items: list[dict[str, object]] = field(default_factory=list)
    problem: str | None = None


def find_parts(text: str, labels: Sequence[str]) -> list[PartMention]:
    """Part words in reading order; earlier (more specific) lexicon entries win overlaps."""
    taken: list[tuple[int, int]] = []
    found: list[PartMention] = []
    for pattern, groups in _part_patterns():
        for match in pattern.finditer(text):
            span = match.span()
            if span[0] == span[1] or any(span[0] < end and start < span[1] for start, end in taken):
                continue
            taken.append(span)
            found.append(_resolve(match.group(0), span, _sided(text, span, groups), labels))
    return sorted(found, key=lambda m: m.start)


def _sided(text: str, span: tuple[int, int], groups: list[list[str]]) -> list[list[str]]:
    """A paired part ("shoes": Left-shoe and Right-shoe) narrowed to the side said around its word."""
    pair = groups[0]
    if len(pair) != 2 or not all(label.startswith(("Left-", "Right-")) for label in pair):
        return groups
    before = text[max(0, span[0] - 24):span[0]]
    c = _compiled()
    side = c["SIDE_BEFORE"].search(before) or c["SIDE_AFTER"].search(text[span[1]:span[1] + 30])
    if side is None or re.search(r"\b(?:left and right|right and left|left or right)\b|左右", before, re.I):
        return groups
    word = (side.groupdict().get("en") or side.groupdict().get("zh") or "").lower()
    wanted = "Left-" if word in ("left", "左") else "Right-"
    return [[label for label in pair if label.startswith(wanted)]]


def _resolve(word: str, span: tuple[int, int], groups: list[list[str]], labels: Sequence[str]) -> PartMention:
    for group in groups:
        present = tuple(label for label in group if label in labels)
        if present:
            return PartMention(span[0], span[1], word, present, ())
    return PartMention(span[0], span[1], word, (), tuple(groups[0]))


class RulePlanner:
    """The offline default planner (``CHATEDIT_PLANNER=rules``)."""

    name = "rules"

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or load_rules()

    def plan(self, request: str, *, labels: Sequence[str], conversation: Sequence[ChatTurn] = ()) -> PlanResult:
        language = detect_language(request)
        if len(request) > 4 * self.rules.text_max_length:
            reason = say(language, f"The request is {len(request)} characters long; please keep it under "
                                    f"{4 * self.rules.text_max_length}.",
                          f"请求有 {len(request)} 个字符，请控制在 {4 * self.rules.text_max_length} 个以内。")
            return PlanResult(reply=reason, not_understood=[NotUnderstood(request[:80], reason)], language=language)
        clauses = self._clauses(request)
        previous: tuple[str, ...] = ()
        for clause in clauses:
            previous = _Reader(clause, labels, previous, language, self.rules).read() or previous
        clauses = _fold_repeated_adjustments(clauses)
        items = [item for clause in clauses for item in clause.items]
        outcome = validate(items, labels, self.rules)
        if not outcome.commands and unsupported_language(request):
            return PlanResult(reply=UNSUPPORTED_LANGUAGE, language="en",
                              not_understood=[NotUnderstood(request[:80], UNSUPPORTED_LANGUAGE)])
        not_understood = [NotUnderstood(c.text, c.problem) for c in clauses if c.problem]
        result = PlanResult(reply="", commands=outcome.commands, rejections=outcome.rejections,
                            not_understood=not_understood, language=language)
        result.reply = summary_reply(result)
        return result

    def _clauses(self, request: str) -> list[Clause]:
        """Split at separators and conjunctions; a verbless piece naming parts finishes the clause before it.

        "make the shirt and the pants white" splits at "and" into "make the shirt" and
        "the pants white"; the second has no action, so the two are read together. But
        in "make the hair blue and the pants red" the first piece is already complete
        (something follows its part), so the second is its own clause with the same
        verb: "make the pants red".
        """
        c = _compiled()
        clauses: list[Clause] = []
        for piece in c["CLAUSE_SPLIT"].split(request)[::2]:
            parts = c["PART_JOIN"].split(piece)
            current = parts[0]
            for joiner, sub in zip(parts[1::2], parts[2::2], strict=True):
                if _has_action(sub) and _has_action(current):
                    clauses.append(Clause(current.strip()))
                    current = sub
                elif (verb := _elliptical_verb(current, sub)) is not None:
                    clauses.append(Clause(current.strip()))
                    current = verb + sub.strip()
                else:
                    current += joiner + sub
            current = re.sub(r"^(?:and|then|also|plus)\s+", "", current.strip(), flags=re.IGNORECASE)
            if (current and clauses and not _CJK.search(current)
                    and (verb := _elliptical_verb(clauses[-1].text, current)) is not None):
                current = verb + current  # "make the hat blue, the scarf yellow": the verb carries over
            if current and not c["SKIP_CLAUSE"].search(current):
                clauses.append(Clause(current))
        return clauses


def _fold_repeated_adjustments(clauses: list[Clause]) -> list[Clause]:
    """"make it darker, much darker" is one adjustment: a clause that only repeats the tonal change
    of the clause before it (same properties, targets and directions) restates its amount, and the
    later wording wins."""
    kept: list[Clause] = []
    for clause in clauses:
        before = next((c for c in reversed(kept) if c.items), None)
        if before is not None and not clause.problem and _same_adjustments(before.items, clause.items):
            before.items = clause.items
            continue
        kept.append(clause)
    return kept


def _same_adjustments(first: list[dict[str, object]], second: list[dict[str, object]]) -> bool:
    def shape(items: list[dict[str, object]]) -> list[tuple[object, ...]] | None:
        if not items or any(item["command"] != "adjust" for item in items):
            return None
        out = []
        for item in items:
            prop, amount, targets = item["paras"]  # type: ignore[misc]
            out.append((prop, float(amount) >= 0, tuple(targets)))  # type: ignore[arg-type]
        return sorted(out, key=repr)

    one = shape(first)
    return one is not None and one == shape(second)


def _elliptical_verb(current: str, sub: str) -> str | None:
    """The verb phrase to repeat when ``sub`` ("the pants red") continues a complete clause ("make the hair blue")."""
    if _has_action(sub) or not _has_action(current):
        return None
    mentions, sub_mentions = find_parts(current, _every_label()), find_parts(sub, _every_label())
    if not mentions or not sub_mentions:
        return None
    if not current[mentions[-1].end:].strip(" ,") or not sub[sub_mentions[-1].end:].strip(" ,"):
        return None  # "make the shirt" + "the pants white": one clause with two parts
    prefix = current[:mentions[0].start]
    return re.sub(r"\b(?:the|a|an|her|his|their|my)\s*$", "", prefix, flags=re.IGNORECASE)


def _has_action(text: str) -> bool:
    c = _compiled()
    keys = ("REMOVE_WORDS", "BLUR_WORDS", "FACE_WORDS", "STYLE_WORDS", "CHANGE_MARKERS_ZH", "CHANGE_VERBS_EN",
            "PUT_SOMEWHERE_EN", "PUT_SOMEWHERE_ZH", "RETOUCH_ZH", "ADD_ZH", "ADD_EN", "MAKE_ZH")
    return (any(c[k].search(text) for k in keys) or any(p.search(text) for p, _, _ in _adjust_patterns())
            or bool(complaint_adjustments(text)))


@cache
def _every_label() -> tuple[str, ...]:
    rules = load_rules()
    return (*rules.default_labels, rules.selection_label)


class _Reader:
    """Reads one clause into command items (or a problem sentence)."""

    def __init__(self, clause: Clause, labels: Sequence[str], previous: tuple[str, ...], language: Language,
                 rules: Rules) -> None:
        self.clause, self.labels, self.previous, self.language, self.rules = clause, labels, previous, language, rules
        self.text = clause.text
        self.c = _compiled()

    # The result: the targets this clause acted on (pronouns in the next clause point to them).
    def read(self) -> tuple[str, ...]:
        for step in (self._face_attribute, self._remove, self._put_somewhere, self._complaint, self._change,
                     self._style, self._look, self._face, self._blur,
                     self._adjust, self._make_en, self._make_zh, self._add, self._retouch):
            outcome = step()
            if outcome is not None:
                return outcome
        mentions = find_parts(self.text, self.labels)
        if mentions:
            self._problem(f"I see {_names(mentions)} but not what to do with it.",
                          f"我看到了{_names(mentions)}，但不明白要怎么修改。")
        else:
            self._problem("I could not tell what to change here.", "我没有理解这一句要修改什么。")
        return ()

    # --- helpers -------------------------------------------------------------------

    def _emit(self, command: str, *paras: object) -> None:
        self.clause.items.append({"command": command, "paras": list(paras)})

    def _problem(self, en: str, zh: str) -> None:
        self.clause.problem = say(self.language, en, zh)

    def _targets(self, text: str, *, allow_pronoun: bool = True) -> tuple[tuple[str, ...], list[PartMention]]:
        """Labels named in ``text`` (present ones) and the mentions of parts the image lacks."""
        mentions = find_parts(text, self.labels)
        present = tuple(dict.fromkeys(label for m in mentions for label in m.labels))
        missing = [m for m in mentions if m.missing]
        selection = self.rules.selection_label
        if not present and not missing and selection in self.labels and re.search(r"\bthis\b|这个|这块|这里|此处", text,
                                                                                   re.IGNORECASE):
            present = (selection,)  # "make this white" points at what the person selected
        if not present and not missing and allow_pronoun and self.c["PRONOUN"].search(text):
            present = self.previous
        return present, missing

    def _report_missing(self, missing: list[PartMention]) -> None:
        """Why a part is not there, and what to do instead: select it (no parts found) or select something first."""
        selection = self.rules.selection_label
        wanted = list(dict.fromkeys(label for m in missing for label in m.missing))
        names = ", ".join(wanted)
        parts = [label for label in self.labels if label != selection]
        if wanted == [selection]:
            self._problem(f"Nothing is selected, so I left \"{self.text}\" out: select an area with the brush or "
                          "a click under Selection tools first, then ask again.",
                          f"还没有选中任何区域，所以没有执行“{self.text}”：请先在 Selection tools（选区工具）里用画笔"
                          "或点击选择，再说一次。")
        elif not parts:
            example = self._about_selection()
            it = "it" if len(wanted) == 1 else "them"
            self._problem(f"No parts were found in this image automatically, so I cannot find {targets_text(wanted)} "
                          f"by myself. Select {it} with the brush or a click under Selection tools, then say "
                          f"“{example}”.",
                          f"这张图片没有自动识别出的部分，我找不到{names}。请在 Selection tools（选区工具）里用画笔"
                          f"或点击选中它，然后说“{example}”。")
        else:
            have = ", ".join(self.labels)
            self._problem(f"This image has no {names} (its parts are {have}), so I left \"{self.text}\" out.",
                          f"这张图片里没有{names}（它的部分是 {have}），所以没有执行“{self.text}”。")

    def _about_selection(self) -> str:
        """This clause about the selection instead of its missing parts: "make the selection red"."""
        zh = self.language == "zh"
        text = self.text
        for mention in reversed([m for m in find_parts(text, self.labels) if m.missing]):
            text = text[:mention.start] + ("选区" if zh else "selection") + text[mention.end:]
        if zh:
            text = re.sub(r"选区(?:\s*[和与及、]\s*选区)+", "选区", text)
            return text if "选区" in text else "把选区……"
        text = re.sub(r"\bselection(?:\s*(?:,|and|&)\s*(?:(?:the|her|his|their|my)\s+)?selection)+", "selection", text,
                      flags=re.IGNORECASE)
        if "selection" not in text:
            return "make the selection …"
        return text if re.search(r"\b(?:the|her|his|their|my)\s+selection", text, re.IGNORECASE) else \
            text.replace("selection", "the selection", 1)

    def _need_targets(self, targets: tuple[str, ...], missing: list[PartMention]) -> bool:
        """True when there are targets to act on; otherwise records why not."""
        if targets:
            return True
        if missing:
            self._report_missing(missing)
        else:
            self._problem(f"Say which part \"{self.text}\" is about.", f"请说明“{self.text}”指的是哪个部分。")
        return False

    def _emit_change(self, targets: tuple[str, ...], what: str) -> None:
        """A change of these parts; retouching only the face is the contract's `face` command."""
        if targets == ("Face",):
            self._emit("face", self._prompt(what))
        else:
            self._emit("change", list(targets), self._prompt(what))

    def _intensity(self, base: float) -> float:
        if self.c["HIGH_INTENSITY"].search(self.text):
            return min(1.0, base * 2.0)
        if self.c["LOW_INTENSITY"].search(self.text):
            return round(base / 2.0, 3)
        return base

    # --- actions, tried in this order ---------------------------------------------

    def _remove(self) -> tuple[str, ...] | None:
        match = self.c["REMOVE_WORDS"].search(self.text)
        if not match:
            return None
        targets, missing = self._targets(self.text)
        if self._need_targets(targets, missing):
            self._emit("remove", list(targets))
        return targets

    def _put_somewhere(self) -> tuple[str, ...] | None:
        match = self.c["PUT_SOMEWHERE_EN"].search(self.text) or self.c["PUT_SOMEWHERE_ZH"].search(self.text)
        if not match:
            return None
        if "Background" not in self.labels:
            self._report_missing([PartMention(0, 0, "background", (), ("Background",))])
            return ()
        self._emit("change", ["Background"], self._prompt(re.sub(r"(?:的)?背景(?:中|里)?$", "", match.group("where"))))
        return ("Background",)

    def _change(self) -> tuple[str, ...] | None:
        """"将X换成Y" / "change X to Y": Y is a colour (recolor) or a thing (change)."""
        split = self._change_split()
        if split is None:
            return None
        before, after = split
        targets, missing = self._targets(before)
        if not targets and not missing:
            targets, missing = self._targets(after, allow_pronoun=False)
            after = _strip_parts(after, self.labels)
        if not targets and not missing:
            return None  # "把照片变成油画风格": no part named, so another reading (style) may fit
        if not self._need_targets(targets, missing):
            return ()
        color = _only_color(after)
        if _only_black_and_white(after):
            self._emit("adjust", "saturation", -1.0, list(targets))
        elif color is not None:
            self._emit("recolor", list(targets), color)
        elif after.strip():
            self._emit_change(targets, after)
        else:
            self._problem(f"Say what {', '.join(targets)} should become.", f"请说明{', '.join(targets)}要变成什么。")
        return targets

    def _change_split(self) -> tuple[str, str] | None:
        text = self.text
        zh = self.c["CHANGE_MARKERS_ZH"].search(text)
        if zh:
            return text[:zh.start()], text[zh.end():]
        colour_verb = re.search(r"(?:变|染|涂|刷)(?:得|成)?(?:更)?(?=(?:" + "|".join(lx.COLOR_ZH_EN) + r")色?)", text)
        if colour_verb:
            return text[:colour_verb.start()], text[colour_verb.end():]
        retouch = self.c["RETOUCH_ZH"].search(text)
        if retouch:
            bare = re.search(r"(?:为|成)", text[retouch.end():])
            if bare:
                cut = retouch.end() + bare.start()
                return text[:cut], text[cut + 1:]
        verb = self.c["CHANGE_VERBS_EN"].search(text)
        if verb:
            marker = self.c["CHANGE_MARKERS_EN"].search(text, verb.end())
            if marker and find_parts(text[verb.end():marker.start()] + " " + text[:verb.start()], _every_label()) or (
                    marker and self.c["PRONOUN"].search(text[verb.end():marker.start()])):
                return text[:marker.start()], text[marker.end():]
        return None

    def _style(self) -> tuple[str, ...] | None:
        match = self.c["STYLE_WORDS"].search(self.text)
        if not match:
            return None
        targets, _ = self._targets(self.text, allow_pronoun=False)
        subject = re.search(r"\bin the style of\s+(.+)", self.text, re.IGNORECASE)
        style = _clean_en(subject.group(1)) if subject else self._prompt(self._style_phrase(match))
        if targets and targets != ("Background",):
            self._emit("change", list(targets), f"{style} style")
            return targets
        self._emit("style", style)
        return ()

    def _style_phrase(self, match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in ("style", "painting", "风格", "画风"):
            # "make it look like a watercolor painting": the words around the generic one carry the style.
            specific = [m.group(0) for m in self.c["STYLE_WORDS"].finditer(self.text)
                        if m.group(0).lower() not in ("style", "painting", "风格", "画风")]
            if specific:
                return specific[0]
            around = re.sub(r"(?:把|将)?(?:图片|照片|画面|整体|整张图)?(?:改成|变成|换成|转换为|转成|调成)?", "",
                            self.text)
            return around.strip() or word
        return word

    def _face_attribute(self) -> tuple[str, ...] | None:
        """Blemishes, wrinkles, eye size: a retouch of the face, read before "remove" and "change" can take them."""
        if not self.c["FACE_ATTRIBUTES"].search(self.text):
            return None
        others = [m for m in find_parts(self.text, _every_label())
                  if not set(m.labels) <= {"Face", "Eyes", "Lips", "Eyebrows"}]
        if others:
            return None  # "斑点在裙子上": spots on the skirt are the skirt's
        return self._retouch_face()

    def _look(self) -> tuple[str, ...] | None:
        """"Make it look vintage", "电影感": a whole-image style when the clause names no part."""
        match = self.c["LOOK_WORDS"].search(self.text)
        if not match or find_parts(self.text, _every_label()):
            return None
        self._emit("style", self._prompt(match.group(0)))
        return ()

    def _complaint(self) -> tuple[str, ...] | None:
        """"It's too dark", "背景太亮了": the opposite adjustment of what the person dislikes."""
        found = complaint_adjustments(self.text)
        if not found:
            return None
        targets, missing = self._targets(self.text)
        if missing and not targets:
            self._report_missing(missing)
            return ()
        amount = self._intensity(DEFAULT_AMOUNT)
        for prop, sign in found:
            self._emit("adjust", prop, round(sign * amount, 3), list(targets))
        return targets

    def _face(self) -> tuple[str, ...] | None:
        match = self.c["FACE_WORDS"].search(self.text)
        if not match:
            return None
        return self._retouch_face()

    def _retouch_face(self) -> tuple[str, ...]:
        if "Face" not in self.labels:
            self._report_missing([PartMention(0, 0, "face", (), ("Face",))])
            return ()
        self._emit("face", self._prompt(self.text))
        return ("Face",)

    def _blur(self) -> tuple[str, ...] | None:
        if not self.c["BLUR_WORDS"].search(self.text):
            return None
        targets, missing = self._targets(self.text)
        if not targets and not missing and "Background" in self.labels:
            targets = ("Background",)  # "虚化" alone is background bokeh
        if self._need_targets(targets, missing):
            self._emit("blur", list(targets), round(self._intensity(DEFAULT_BLUR), 3))
        return targets

    def _adjust(self) -> tuple[str, ...] | None:
        found = []
        for pattern, prop, sign in _adjust_patterns():
            match = pattern.search(self.text)
            if match and prop not in {p for p, _ in found}:
                around = self.text[max(0, match.start() - 14):match.end() + 6]
                found.append((prop, -1 if sign == 1 and self.c["LESSEN"].search(around) else sign))
        if not found:
            return None
        targets, missing = self._targets(self.text)
        if missing and not targets:
            self._report_missing(missing)
            return ()
        if targets == ("Face",) and self.c["FACE_RETOUCH"].search(self.text):
            self._emit("face", self._prompt(self.text))
            return targets
        amount = self._intensity(DEFAULT_AMOUNT)
        for prop, sign in found:
            value = -1.0 if sign < -1 else round(sign * amount, 3)
            self._emit("adjust", prop, value, list(targets))
        return targets

    def _make_en(self) -> tuple[str, ...] | None:
        """"make the shirt white", "turn the hat red": English with no "to"/"into"."""
        verb = re.search(r"\b(?:make|turn|paint|dye|colou?r|recolou?r|get)\b", self.text, re.IGNORECASE)
        if not verb:
            return None
        mentions = find_parts(self.text[verb.end():], self.labels)
        targets, missing = self._targets(self.text[verb.end():])
        if not self._need_targets(targets, missing):
            return ()
        after = self.text[verb.end():]
        pointer = re.search(r"\b(?:this|it|them)\b", after, re.IGNORECASE)
        anchor = max(m.end for m in mentions) if mentions else (pointer.end() if pointer else len(after))
        rest = after[anchor:]
        color = _only_color(rest)
        if color is not None:
            self._emit("recolor", list(targets), color)
        elif rest.strip():
            self._emit("change", list(targets), f"{_clean_en(rest)} {' '.join(m.word for m in mentions)}".strip())
        else:
            self._problem(f"Say what {', '.join(targets)} should become.", f"请说明{', '.join(targets)}要变成什么。")
        return targets

    def _make_zh(self) -> tuple[str, ...] | None:
        """"让头发更加蓬松自然": the parts change to look as described."""
        match = self.c["MAKE_ZH"].search(self.text)
        if not match:
            return None
        targets, missing = self._targets(match.group("what"))
        if not targets and not missing:
            return None
        if self._need_targets(targets, missing):
            self._emit_change(targets, self.text[match.start("what"):])
        return targets

    def _add(self) -> tuple[str, ...] | None:
        """"给帽子添加花纹" / "在背景中加入花海" / "戴上墨镜": the parts named are changed; no part: a global instruction."""
        match = self.c["ADD_ZH"].search(self.text) or self.c["ADD_EN"].search(self.text)
        if not match:
            return None
        thing = self.text[match.end():]
        targets, missing = self._targets(self.text[:match.start()], allow_pronoun=False)
        if not targets:
            targets, missing = self._targets(thing, allow_pronoun=False)
        if missing and not targets:
            self._report_missing(missing)
            return ()
        if targets:
            self._emit_change(targets, thing or self.text)
            return targets
        self._emit("instruct", self._prompt(self.text))
        return ()

    def _retouch(self) -> tuple[str, ...] | None:
        """"对发型进行修饰", "增强头发的光泽感": change the parts as the clause says; no part: a global instruction."""
        if not self.c["RETOUCH_ZH"].search(self.text) and not self.c["CHANGE_VERBS_EN"].search(self.text):
            return None
        targets, missing = self._targets(self.text)
        if targets:
            self._emit_change(targets, self.text)
        elif missing:
            self._report_missing(missing)
        elif re.search(r"效果|光线|光影|氛围|质感|感觉|effect|light|mood|atmosphere", self.text, re.IGNORECASE):
            self._emit("instruct", self._prompt(self.text))
        else:
            self._problem(f"Say which part \"{self.text}\" is about.", f"请说明“{self.text}”指的是哪个部分。")
        return targets

    def _prompt(self, text: str) -> str:
        text = text.strip(" ：:，,。.")
        if not _CJK.search(text):
            return _clean_en(text) or text
        return _translate_zh(text)


def _only_color(text: str) -> str | None:
    """The colour when ``text`` names only a colour ("white", "明亮的橙色", "a deep navy"), else None."""
    stripped = _compiled()["COLOR_FILLER"].sub(" ", text).strip(" ：:，,。.！!")
    stripped = re.sub(r"\s+", " ", stripped)
    if not stripped:
        return None
    zh = re.fullmatch(r"(深|浅|淡|亮)?(" + "|".join(sorted(lx.COLOR_ZH_EN, key=len, reverse=True)) + r")色?", stripped)
    if zh:
        shade, word = zh.groups()
        name = lx.COLOR_ZH_EN[word]
        if shade:
            prefixed = ("dark" if shade == "深" else "light") + name
            try:
                parse_color(prefixed)
                return prefixed
            except InvalidColor:
                pass
        return word + "色" if word in "白黑红橙黄绿青蓝紫粉灰棕金银" else name
    try:
        parse_color(stripped)
    except InvalidColor:
        return None
    return stripped.lower()


def _only_black_and_white(text: str) -> bool:
    """True when ``text`` says only "black and white" ("黑白", "a black-and-white photo"): a tonal change."""
    black_white = _adjust_patterns()[0][0]
    if not black_white.search(text):
        return False
    rest = re.sub(r"照片|图片|效果|风格|色调|的|色|\b(?:photo|picture|image|effect|style|tones?|a|an|the)\b|[\s,.，。]",
                  "", black_white.sub("", text), flags=re.IGNORECASE)
    return not rest


def _strip_parts(text: str, labels: Sequence[str]) -> str:
    for mention in reversed(find_parts(text, labels)):
        text = text[:mention.start] + text[mention.end:]
    return text


def _clean_en(text: str) -> str:
    text = re.sub(r"^\s*(?:a|an|the|some)\s+", "", text.strip(), flags=re.IGNORECASE)
    return text.strip(" .,!;:")


@cache
def _glossary() -> list[tuple[str, str]]:
    return sorted(lx.GLOSSARY_ZH_EN, key=lambda pair: len(pair[0]), reverse=True)


def _translate_zh(text: str) -> str:
    """English from the glossary when it covers every word, else the person's Chinese as written."""
    cleaned = re.sub(r"^(?:将|把|给|让|使|对|为)?(?:图片|照片|画面|人物)?(?:中|里)?的?", "", text)
    translated = cleaned
    for zh, en in _glossary():
        translated = translated.replace(zh, f" {en} " if en.strip() else en)
    if _CJK.search(translated):
        return cleaned or text
    return re.sub(r"\s+", " ", re.sub(r"\s*,\s*", ", ", translated)).strip(" ,")


def _names(mentions: Sequence[PartMention]) -> str:
    return ", ".join(dict.fromkeys(label for m in mentions for label in (m.labels or m.missing)))
