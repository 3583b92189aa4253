"""The typed config as a command line: ``--preset NAME`` then ``--section.field VALUE`` overrides.

Every field of every config section becomes a flag (``--learner.learning_rate 0.01``),
typed from the preset's value; short aliases cover the common ones (``--env``,
``--seed``, ``--steps``). ``--help`` lists every flag with the preset's default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

from agents.efficientzero.presets import PRESETS, get_preset
from dreamer.config import Config

ALIASES = {"env": "env.id", "seed": "seed", "steps": "loop.env_steps"}


def _parse_value(text: str, current: Any, name: str) -> Any:
    """Parses ``text`` to the type of ``current`` (the preset's value)."""
    low = text.strip().lower()
    if low in ("none", "null") and (current is None or not isinstance(current, (bool,))):
        return None
    try:
        if isinstance(current, bool):
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            value = json.loads(text if text.strip().startswith("[") else f"[{text}]")
            return _tuplify(value)
        if current is None:
            for cast in (int, float):
                try:
                    return cast(text)
                except ValueError:
                    pass
            return text
        return text
    except (ValueError, json.JSONDecodeError):
        kind = type(current).__name__
        raise ValueError(f"--{name}: expected a {kind}, got {text!r}") from None


def _tuplify(value):
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def _fields(cfg: Config):
    """Yields ``(dotted name, current value)`` for every leaf field."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                yield f"{f.name}.{sub.name}", getattr(value, sub.name)
        else:
            yield f.name, value


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Returns ``cfg`` with dotted-name overrides applied (validated by the dataclasses)."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        if "." in name:
            section, field = name.split(".", 1)
            sections.setdefault(section, {})[field] = value
        else:
            top[name] = value
    for section, changes in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **changes)
    return dataclasses.replace(cfg, **top)


def build_parser(cfg: Config, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--preset", default=cfg.preset, help=f"one of {', '.join(sorted(PRESETS))} (default: %(default)s)")
    for alias, target in ALIASES.items():
        if alias == target:
            continue
        parser.add_argument(f"--{alias}", dest=f"alias:{target}", metavar="VALUE", help=f"same as --{target}")
    for name, value in _fields(cfg):
        if name == "preset":
            continue
        parser.add_argument(f"--{name}", dest=f"field:{name}", metavar="VALUE", help=f"(default: {value!r})")
    return parser


def parse_config(argv: Sequence[str], prog: str, description: str, extra: Any = None) -> tuple[Config, argparse.Namespace]:
    """Parses ``argv`` into a validated :class:`Config`; exits with a one-line error on bad input.

    ``extra(parser)`` may add script-specific flags, returned in the namespace.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="cartpole")
    known, _ = pre.parse_known_args(argv)
    try:
        base = get_preset(known.preset)
    except ValueError as e:
        _fail(prog, str(e))
    parser = build_parser(base, prog, description)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    current = dict(_fields(base))
    try:
        for key, text in vars(args).items():
            if text is None or ":" not in key:
                continue
            name = key.split(":", 1)[1]
            overrides[name] = _parse_value(text, current[name], name)
        cfg = apply_overrides(base, overrides)
    except (ValueError, TypeError) as e:
        _fail(prog, str(e))
    return cfg, args


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)
