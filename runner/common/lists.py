"""Lists on the command line: seeds (0-4, 0,3,7, 0-2,9) and positive integers (10,20,50)."""

from __future__ import annotations

import re


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; both forms may mix ('0-2,9')."""
    seeds = []
    for part in (p.strip() for p in str(text).split(",")):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
            raise ValueError(f"--seeds {text}: expected A-B (A <= B) or a comma list of seeds >= 0, e.g. 0-4 or 0,3,7")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        seeds.extend(range(low, high + 1))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text}: a seed appears twice")
    return seeds


def parse_ints(text: str, flag: str, low: int = 1) -> list[int]:
    """'10,20,50' -> [10, 20, 50], each >= `low`, no repeats; ValueError naming `flag` otherwise."""
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        if not re.fullmatch(r"-?\d+", part) or int(part) < low:
            raise ValueError(f"{flag} {text}: expected a comma list of integers >= {low}, got {part!r}")
        values.append(int(part))
    if len(set(values)) != len(values):
        raise ValueError(f"{flag} {text}: a value appears twice")
    return values
