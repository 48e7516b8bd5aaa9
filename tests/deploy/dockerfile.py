"""Read the Dockerfile and .dockerignore the way Docker does, for the deployment tests.

There is no container engine on the test machines, so the image is never built here; these
helpers let the tests check what a build would do.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY…
    args: str  # the rest of the logical line, continuations joined


def instructions(text: str | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, comment lines dropped and continuation lines joined."""
    if text is None:
        text = DOCKERFILE.read_text()
    result: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment line never ends an instruction, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def words(args: str) -> list[str]:
    """An instruction's arguments: the JSON (exec) form or the shell-like form."""
    if args.startswith("["):
        return list(json.loads(args))
    return shlex.split(args)


def copy_sources(instruction: Instruction) -> list[str]:
    """The sources of a COPY (flags such as --chown dropped; the last word is the target)."""
    parts = [w for w in words(instruction.args) if not w.startswith("--")]
    return parts[:-1]


def env_names(instruction: Instruction) -> list[str]:
    """Variable names an ENV or ARG instruction sets (``A=1 B=2``, or legacy ``ENV A 1``)."""
    parts = words(instruction.args)
    if instruction.keyword == "ENV" and parts and "=" not in parts[0]:
        return [parts[0]]
    return [p.split("=", 1)[0] for p in parts]


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore matching: Go's filepath.Match plus ``**`` for any directories."""
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list[str] | None = None) -> bool:
    """Whether a context path (relative, ``/``-separated) is left out of the build context.

    A path is out when it or one of its parent directories matches; the last matching
    pattern decides, and a ``!pattern`` brings a path back.
    """
    if patterns is None:
        patterns = ignore_patterns()
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    decision = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negate else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            decision = not negate
    return decision
