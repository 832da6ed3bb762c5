"""The one scan before anything is written or published: no removed name, no secret, no local path.

The names are what a sanitized model must not disclose, in any form a reader would recognise: any case or Unicode
form, accents dropped, JSON/URL/HTML-escaped, words joined by spaces, underscores, dashes or nothing, and every
spelling unlearning was trained on ("Last, First", "F. Last", the surname alone where distinctive, typos…).
Text is folded (``fold``) to lower-case ASCII-like words and each form is looked for on word boundaries.
Secrets (Hub tokens) and local paths are looked for verbatim. Errors name files and labels, never what was found.

Skipped, because they cannot reveal who was removed: a root-level vocabulary (``vocab.json``, ``merges.txt``: the
base model's, holding thousands of single-word names), the vocabulary inside ``tokenizer.json`` (the rest of it is
read) and tensor data (a safetensors header and a pickle's strings are read).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import pickletools
import re
import struct
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote

VOCABULARY_FILES = frozenset({"vocab.json", "merges.txt"})
HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")
_LETTERS = str.maketrans({"ł": "l", "ø": "o", "đ": "d", "ð": "d", "ı": "i", "æ": "ae", "œ": "oe", "þ": "th",
                          "ħ": "h", "ŀ": "l"})
_ESCAPES = re.compile(r"\\[uU]([dD][89abAB][0-9a-fA-F]{2})\\[uU]([dD][c-fC-F][0-9a-fA-F]{2})|\\U([0-9a-fA-F]{8})"
                      r"|\\[uU]([0-9a-fA-F]{4})|\\[xX]([0-9a-fA-F]{2})")
_NOT_WORD = re.compile(r"[\W_]+")
MIN_SPACELESS = 6


class NameLeakError(ValueError):
    """A file, repository id, branch, commit message or path would hold a removed name, a secret or a local path."""


def _unescape(match: re.Match) -> str:
    high, low, eight, four, two = match.groups()
    if high:
        return (chr(int(high, 16)) + chr(int(low, 16))).encode("utf-16", "surrogatepass").decode("utf-16")
    code = int(four or eight or two, 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else " "


def fold(text: str) -> str:
    """Text as words a reader would recognise: unescaped, NFKC, case-folded, accents dropped, separators → one space."""
    text = _ESCAPES.sub(_unescape, unquote(html.unescape(text), errors="replace"))
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(char for char in text if unicodedata.category(char) != "Mn").translate(_LETTERS)
    return _NOT_WORD.sub(" ", text).strip()


def name_forms(name: str, extra: Iterable[str] = ()) -> set[str]:
    """Folded forms of ``name`` to look for: the name, its generated and ``extra`` variants, and the usual
    reorderings and initials ("Last, First", "F. Last", "F Last", "First L.", "J. R. Last", "Last F.")."""
    from ..data.variants import held_out_variants, is_distinctive, name_variants

    words = fold(name).split()
    forms = {fold(text) for text in [name, *name_variants(name), *(v.text for v in held_out_variants(name)), *extra]}
    original = [word for word in name.split() if fold(word)]
    if len(words) > 1 and len(original) > 1:
        given, last = [fold(word) for word in original[:-1]], fold(original[-1])
        initials = [fold(word[0]) or fold(word)[0] for word in original]  # "Þ" folds to "th": its initial too
        forms |= {f"{last} {' '.join(given)}", f"{initials[0]} {last}", f"{' '.join(initials[:-1])} {last}",
                  f"{''.join(initials[:-1])} {last}", f"{given[0]} {initials[-1]}", f"{last} {initials[0]}"}
    kept = set()
    for form in forms - {""}:
        if all(len(word) < 2 for word in form.split()):
            continue  # initials alone ("p l", from the variant "P. Last" turned into "First L.") name nobody
        if " " in form or form == " ".join(words) or (len(form) >= 4 and is_distinctive(form)):
            kept.add(form)
    return kept


class Scanner:
    """What must not leave: ``names`` (with ``variants``, every form of each), ``secrets`` and local ``paths``.

    ``hits(text)`` says which kinds a text holds; ``check`` raises ``NameLeakError`` naming labels and files only.
    """

    def __init__(self, names: Iterable[str] = (), *, variants: Iterable[str] = (), secrets: Iterable[str] = (),
                 paths: Iterable[str | os.PathLike] = ()):
        names, variants = list(names), list(variants)
        self.forms = sorted(set().union(*(name_forms(name) for name in names), *(name_forms(v) for v in variants)))
        self.spaceless = sorted({form.replace(" ", "") for form in self.forms if " " in form
                                 and len(form.replace(" ", "")) >= MIN_SPACELESS})
        tokens = [secret for secret in secrets if isinstance(secret, str) and len(secret) >= 8]
        self.secrets = sorted(set(tokens))
        real = {os.path.realpath(os.fspath(path)) for path in paths if path}
        self.paths = sorted(path for path in real if path.count("/") >= 2 or (len(path) > 5 and path != "/root"))

    @classmethod
    def for_publishing(cls, names: Iterable[str] = (), *, variants: Iterable[str] = (), token=None,
                       paths: Iterable[str | os.PathLike | None] = ()) -> Scanner:
        """A scanner for the names, every Hub token this process knows of, and the home/working/given paths."""
        from huggingface_hub import get_token

        secrets = [token if isinstance(token, str) else None, get_token(), os.environ.get("HF_TOKEN")]
        home = os.path.expanduser("~")
        places = [home if home not in ("/", "/root") else None, os.getcwd() if os.getcwd() != "/" else None, *paths]
        return cls(names, variants=variants, secrets=[s for s in secrets if s], paths=[p for p in places if p])

    # Finding ------------------------------------------------------------------------------------------------------

    def name_in(self, text: str) -> bool:
        folded = fold(text)
        padded = f" {folded} "
        if any(f" {form} " in padded for form in self.forms):
            return True
        squeezed = folded.replace(" ", "")
        return any(form in squeezed for form in self.spaceless)

    def hits(self, text: str, *, names: bool = True) -> list[str]:
        """The kinds of thing ``text`` holds: ``"name"``, ``"secret"``, ``"path"``."""
        found = []
        if names and self.forms and self.name_in(text):
            found.append("name")
        if any(secret in text for secret in self.secrets) or HUB_TOKEN.search(text):
            found.append("secret")
        if any(path in text for path in self.paths):
            found.append("path")
        return found

    def redact(self, text: str) -> str:
        """``text``, or a fixed notice when it holds anything this scanner looks for."""
        return "[withheld: the message named a removed person, a secret or a local path]" if self.hits(text) else text

    def directory_hits(self, directory: str | os.PathLike, *, names_allowed_in: Iterable[str] = ()) -> dict[str, list]:
        """Relative path → kinds found, for every file (and path) under ``directory`` that holds something."""
        root = Path(directory)
        allowed = set(names_allowed_in)
        found = {}
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            kinds = set(self.hits(relative))
            if path.is_symlink():
                kinds.add("link")
            elif path.is_file():
                vocabulary = relative in VOCABULARY_FILES
                kinds |= set(self.hits(read_text(path), names=not vocabulary and relative not in allowed))
            if kinds:
                found[relative] = sorted(kinds)
        return found

    def check(self, *, directory: str | os.PathLike | None = None, texts: Mapping[str, str | None] | None = None,
              names_allowed_in: Iterable[str] = ()) -> None:
        """Raise ``NameLeakError`` if a text (label → text) or a file under ``directory`` holds anything."""
        leaks = [f"{label} ({', '.join(kinds)})" for label, text in (texts or {}).items()
                 if text and (kinds := self.hits(str(text)))]
        named = 0
        if directory is not None:
            for relative, kinds in self.directory_hits(directory, names_allowed_in=names_allowed_in).items():
                if self.hits(relative):
                    named += 1
                else:
                    leaks.append(f"{relative} ({', '.join(kinds)})")
        if named:
            leaks.append(f"{named} file name(s)")
        if leaks:
            raise NameLeakError(
                f"Refusing to write or publish: {', '.join(leaks)} would disclose a removed name, a secret or a "
                "local path. Remove it (publish_names=True lists the names in the model card only, on purpose).")


def read_text(path: Path) -> str:
    """What a reader could get out of a file as text: its strings, not its tensor data."""
    if path.stat().st_size == 0:
        return ""
    with open(path, "rb") as handle:
        if path.suffix == ".safetensors":
            (size,) = struct.unpack("<Q", handle.read(8))
            return handle.read(size).decode("utf-8", "replace")
        head = handle.read(4)
    if zipfile.is_zipfile(path):
        return _zip_strings(path)
    data = path.read_bytes()
    if head[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        text = data.decode("utf-32", "replace")
    elif head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = data.decode("utf-16", "replace")
    else:
        text = data.decode("utf-8", "replace")
    if path.name == "tokenizer.json":
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            tokenizer = json.loads(text)
            for key in ("vocab", "merges"):
                tokenizer.get("model", {}).pop(key, None)
            text = json.dumps(tokenizer, ensure_ascii=False)
    return text


def _zip_strings(path: Path) -> str:
    """Entry names and every string of the pickles in a zip (``torch.save``'s format); tensor data is skipped."""
    parts = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            parts.append(info.filename)
            if info.filename.endswith(".pkl"):
                data = archive.read(info)
                try:
                    parts += [arg if isinstance(arg, str) else arg.decode("utf-8", "replace")
                              for _, arg, _ in pickletools.genops(data) if isinstance(arg, (str, bytes))]
                except Exception:  # noqa: BLE001 - an unreadable pickle is read as raw text instead
                    parts.append(data.decode("utf-8", "replace"))
            elif info.file_size < 4096:
                parts.append(archive.read(info).decode("utf-8", "replace"))
    return "\n".join(parts)


# The former helpers, kept for callers that only have names --------------------------------------------------------

def files_with_names(directory: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Relative paths (POSIX) under ``directory`` whose path or content holds a form of one of ``names``."""
    scanner = Scanner(names)
    return [path for path, kinds in scanner.directory_hits(directory).items() if "name" in kinds]


def ensure_no_names(names: Iterable[str], *, directory: str | os.PathLike | None = None,
                    texts: Mapping[str, str] | None = None) -> None:
    """Raise ``NameLeakError`` if a file under ``directory``, or one of ``texts`` (label → text), holds a name."""
    Scanner(names).check(directory=directory, texts=texts)


@contextlib.contextmanager
def redacting(scanner: Scanner | None) -> Iterator[None]:
    """Re-raise an exception whose message (or cause's) holds what ``scanner`` looks for with a fixed message."""
    if scanner is None:
        yield
        return
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised, same type where possible
        chain, seen = [], error
        while seen is not None and len(chain) < 10:
            chain.append(seen)
            seen = seen.__cause__ or seen.__context__
        if not any(scanner.hits(str(item)) or scanner.hits(repr(item.args)) for item in chain):
            raise
        message = scanner.redact(str(error) or "x")
        try:
            redacted = type(error)(message)
        except Exception:  # noqa: BLE001 - exception types with other signatures
            redacted = RuntimeError(f"{type(error).__name__}: {message}")
        raise redacted from None
