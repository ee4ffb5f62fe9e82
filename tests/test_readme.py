"""The README's commands must run: every `sfdet ...` command and every dotted config key it shows parses,
and the Quick start block runs end to end (on the quick toy set, with tiny-run overrides).

What is checked, against the code rather than a copy of it:

- every `sfdet ...` command, in ```bash blocks (continuation lines joined, comments dropped, `.venv/bin/sfdet`,
  `python -m sfdet` and `torchrun ... -m sfdet` accepted) and in inline code: the subcommand exists, every
  `--flag` exists for that (sub-)subcommand in the argparse parser `sfdet.cli` builds, the whole command parses
  (inline fragments such as `sfdet train` may leave required arguments out), every `key=value` override names
  a field of `sfdet.config.Config`, and a `--config` file of this checkout loads with the command's overrides;
- every dotted `model.` / `data.` / `train.` key the prose mentions (`data.cache=ram`, `train.precision: auto`)
  is a field of the typed config;
- the Quick start block, parsed out of the README and run in order through `sfdet.cli.main` in a temporary
  folder: `toy-data` becomes the quick generator, `train` and `predict` get tiny-run options; everything else
  (subcommands, paths, flags, the `cat` that joins the CSVs) is the README's own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import glob
import io
import json
import re
import shlex
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from sfdet import cli
from sfdet.config import Config
from test_train import TINY as TINY_TRAIN  # tiny-run overrides: 8-frame clips at 64 px, 2 epochs, fp32

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

TINY_PREDICT = ["--precision", "fp32", "--no-progress"]

SHELL_LANGS = {"bash", "sh", "shell", "console"}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}
CONFIG_SECTIONS = ("model", "data", "train")
FILE_SUFFIXES = {"csv", "yaml", "yml", "py", "pt", "pth", "pyth", "pkl", "json", "jsonl", "png", "mp4", "md",
                 "txt", "pbtxt", "sh", "avi", "jpg"}
# A dotted config key in prose: `model.alpha`, `data.cache=ram`, `train.precision: auto`; not a file name
# (`annotations/train.csv`), a module path (`sfdet.data.video`) or a word in a sentence ("the data. The").
KEY_RE = re.compile(r"(?<![\w./\-])((?:%s)\.[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?![\w/(-])" % "|".join(CONFIG_SECTIONS))
OVERRIDE_RE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)=(.*)$", re.S)


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------


@dataclass
class ShellLine:
    line: int  # 1-based README line where the (possibly continued) command starts
    text: str  # the command as written, continuations joined
    tokens: list[str]


@dataclass
class Command:
    line: int
    text: str
    argv: list[str]  # the arguments after `sfdet`
    complete: bool  # from a shell block: must parse in full (inline code may be a fragment)


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # unbalanced quotes in prose code: whitespace split is good enough
        return text.split()


def shell_blocks(text: str) -> list[list[ShellLine]]:
    """The ```bash (sh, shell, console) blocks, each as its commands (continuations joined, comments dropped)."""
    blocks: list[list[ShellLine]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*(```+|~~~+)\s*(\w*)", lines[i])
        if not fence:
            i += 1
            continue
        marker, lang = fence.group(1), fence.group(2).lower()
        i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1  # the closing fence
        if lang not in SHELL_LANGS:
            continue
        block: list[ShellLine] = []
        start, parts = None, []
        for number, raw in body:
            if start is None:
                start = number
            stripped = raw.rstrip()
            if stripped.endswith("\\"):
                parts.append(stripped[:-1])
                continue
            parts.append(stripped)
            joined = " ".join(p.strip() for p in parts)
            start_line, start, parts = start, None, []
            if joined.startswith("$ "):
                joined = joined[2:]
            tokens = _split(joined)
            if tokens:
                block.append(ShellLine(start_line, joined, tokens))
        blocks.append(block)
    return blocks


def _blank_fences(text: str) -> str:
    """The text with every fenced block's lines emptied (line numbers kept)."""
    out, in_fence, marker = [], False, ""
    for raw in text.splitlines():
        fence = re.match(r"^\s*(```+|~~~+)", raw)
        if not in_fence and fence:
            in_fence, marker = True, fence.group(1)
            out.append("")
        elif in_fence:
            if raw.strip().startswith(marker):
                in_fence = False
            out.append("")
        else:
            out.append(raw)
    return "\n".join(out)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def inline_code(text: str) -> list[tuple[int, str]]:
    """Inline code spans outside fenced blocks, with their line (spans may cross a line break)."""
    prose = _blank_fences(text)
    return [(_line_of(prose, m.start()), " ".join(m.group(1).split()))
            for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose)]


def _sfdet_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after `sfdet` (`.venv/bin/sfdet`, `-m sfdet`), up to a shell operator; None: no sfdet."""
    for i, token in enumerate(tokens):
        if (token == "sfdet" or token.endswith("/sfdet")) and (i == 0 or tokens[i - 1] == "-m"):
            argv = []
            for arg in tokens[i + 1:]:
                if arg in SHELL_OPERATORS or arg.startswith((">", "2>", "|")):
                    break
                if arg in ("...", "…"):  # "and so on" in prose
                    continue
                argv.append(arg)
            return argv
    return None


def extract_commands(text: str) -> list[Command]:
    commands = []
    for block in shell_blocks(text):
        for shell_line in block:
            argv = _sfdet_argv(shell_line.tokens)
            if argv is not None:
                commands.append(Command(shell_line.line, shell_line.text, argv, complete=True))
    for line, code in inline_code(text):
        argv = _sfdet_argv(_split(code))
        if argv is not None:
            commands.append(Command(line, code, argv, complete=False))
    return sorted(commands, key=lambda c: c.line)


def extract_config_keys(text: str) -> list[tuple[int, str]]:
    """Dotted `model.` / `data.` / `train.` keys mentioned outside shell blocks (commands are checked whole)."""
    prose = _blank_fences(text)
    keys = []
    for m in KEY_RE.finditer(prose):
        key = m.group(1)
        if key.rsplit(".", 1)[-1].lower() in FILE_SUFFIXES:
            continue
        keys.append((_line_of(prose, m.start()), key))
    return keys


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _config_keys(cls: type = Config, prefix: str = "") -> dict[str, typing.Any]:
    """Every dotted key of the typed config -> its type (a section's key maps to the dataclass)."""
    keys: dict[str, typing.Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        keys[key] = tp
        if dataclasses.is_dataclass(tp):
            keys.update(_config_keys(tp, key + "."))
    return keys


def config_key_problem(key: str) -> str | None:
    """None when `key` names a field of sfdet.config.Config, else a message naming the key and the likely one."""
    keys = _config_keys()
    if key in keys:
        return None
    # Below a dict-typed field any sub-key is data, not a config field.
    parts = key.split(".")
    for n in range(1, len(parts)):
        tp = keys.get(".".join(parts[:n]))
        if tp is not None and (typing.get_origin(tp) is dict or tp is dict):
            return None
    leaf = parts[-1]
    same_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    likely = same_leaf or difflib.get_close_matches(key, list(keys), n=1, cutoff=0.5)
    hint = f" (did you mean '{likely[0]}'?)" if likely else ""
    return f"unknown config key '{key}'{hint}"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _final_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser that reads `argv`'s options (`sfdet data check` -> the `check` parser) and the command path."""
    parser = cli.build_parser(only=argv[0])
    path: list[str] = []
    positionals = [a for a in argv if not a.startswith("-")]
    for word in positionals:
        choices = _subparsers(parser)
        if not choices or word not in choices:
            break
        parser = choices[word]
        path.append(word)
    return parser, path


def _parse(argv: list[str]) -> str | None:
    """None when argparse accepts `argv`, else its error line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli.build_parser(only=argv[0]).parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
            return lines[-1] if lines else f"argparse exited {exc.code}"
    return None


def command_problems(command: Command, repo: Path = REPO) -> list[str]:
    """Why `command` would not run as written ([] when it parses)."""
    argv = command.argv
    if not argv or argv[0].startswith("-"):
        return []  # `sfdet --help`, `sfdet --version`: nothing to check beyond argparse's own
    name = argv[0]
    if name not in cli.COMMANDS:
        close = difflib.get_close_matches(name, list(cli.COMMANDS), n=1)
        return [f"unknown subcommand '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")]
    problems = []
    parser, path = _final_parser(argv)
    known = {opt for action in parser._actions for opt in action.option_strings}
    where = " ".join(["sfdet", *path])
    for arg in argv:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            if flag not in known:
                close = difflib.get_close_matches(flag, sorted(known), n=1)
                problems.append(f"'{where}' has no option '{flag}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    overrides = []
    for arg in argv:
        m = OVERRIDE_RE.match(arg)
        if m and not arg.startswith("-") and "/" not in m.group(1):
            overrides.append(arg)
            problem = config_key_problem(m.group(1))
            if problem:
                problems.append(problem)
    if not problems:
        error = _parse(argv)
        if error and (command.complete or "the following arguments are required" not in error):
            problems.append(f"does not parse: {error}")
    if not problems and "--config" in argv and name in ("train", "data"):
        config = argv[argv.index("--config") + 1] if argv.index("--config") + 1 < len(argv) else ""
        if config.startswith("configs/"):
            from sfdet.config import load_config
            from sfdet.errors import ConfigError

            if not (repo / config).is_file():
                problems.append(f"config file not found: {config}")
            else:
                try:
                    load_config(repo / config, overrides)
                except ConfigError as exc:
                    problems.append(f"config does not load: {exc}")
    return problems


def _all_options() -> set[str]:
    """Every option string of every sfdet subcommand (and sub-subcommand)."""
    options: set[str] = set()
    for command in cli.COMMANDS:
        stack = [cli.build_parser(only=command)]
        while stack:
            parser = stack.pop()
            options.update(opt for action in parser._actions for opt in action.option_strings)
            stack.extend(_subparsers(parser).values())
    return options


def loose_flag_problems(text: str, repo: Path = REPO) -> list[tuple[int, str]]:
    """Inline code that starts with a `--flag` outside a command (`--precision fp32`): the flag must be an option of
    some sfdet command, or of one of the scripts under scripts/ (the README's benches)."""
    problems = []
    options: set[str] | None = None
    scripts = "\n".join(p.read_text(encoding="utf-8", errors="replace")
                        for p in sorted((repo / "scripts").glob("*")) if p.is_file())
    for line, code in inline_code(text):
        tokens = _split(code)
        if not tokens or not re.match(r"^--[a-z]", tokens[0]) or _sfdet_argv(tokens) is not None:
            continue
        flag = tokens[0].split("=", 1)[0]
        if options is None:
            options = _all_options()
        if flag not in options and f'"{flag}"' not in scripts and f"'{flag}'" not in scripts:
            close = difflib.get_close_matches(flag, sorted(options), n=1)
            problems.append((line, f"'{flag}' is no option of any sfdet command or script"
                                   + (f" (did you mean '{close[0]}'?)" if close else "")))
    return problems


def readme_problems(text: str, name: str = "README.md") -> list[str]:
    """Every command and key problem in a README text, one line each, naming the README line."""
    problems: list[tuple[int, str]] = []
    in_commands = set()  # (line, key) of overrides a command already reports
    for command in extract_commands(text):
        in_commands.update((command.line, m.group(1)) for m in map(OVERRIDE_RE.match, command.argv) if m)
        for problem in command_problems(command):
            problems.append((command.line, f"{name}:{command.line}: `sfdet {' '.join(command.argv)}`: {problem}"))
    for line, key in extract_config_keys(text):
        problem = config_key_problem(key)
        if problem and (line, key) not in in_commands:
            problems.append((line, f"{name}:{line}: `{key}`: {problem}"))
    for line, problem in loose_flag_problems(text):
        problems.append((line, f"{name}:{line}: {problem}"))
    return [message for _, message in sorted(problems, key=lambda p: p[0])]


# --------------------------------------------------------------------------
# Tests: parsing
# --------------------------------------------------------------------------


def test_every_readme_command_and_config_key_parses():
    problems = readme_problems(README.read_text(encoding="utf-8"))
    assert not problems, "README commands / config keys that do not parse:\n" + "\n".join(problems)


def test_the_extractor_finds_the_readme_commands_and_keys():
    """So that a broken extractor cannot pass the test above by finding nothing."""
    text = README.read_text(encoding="utf-8")
    commands = extract_commands(text)
    quick = [c for c in commands if c.complete]
    assert [c.argv[0] for c in quick[:6]] == ["toy-data", "data", "train", "plot", "predict", "eval"]
    predict = next(c for c in quick if c.argv[0] == "predict")  # a continued line, joined
    assert "--boxes" in predict.argv and "--render" in predict.argv
    inline = {c.argv[0] for c in commands if not c.complete and c.argv}
    assert set(cli.COMMANDS) <= inline  # the Commands table names every subcommand
    keys = {key for _, key in extract_config_keys(text)}
    assert {"data.cache", "train.precision", "train.channels_last", "model.alpha", "train.lr"} <= keys
    assert not any(k.endswith((".csv", ".py")) or k.startswith("data.video") for k in keys)


SAMPLE = """\
# A README with mistakes

```bash
.venv/bin/sfdet train --config configs/toy/slowfast_tiny.yaml data.root=data/toy \\
        model.init=slowfast_r50_detection --no-progres
sfdet eval --gt gt.csv --pred p.csv --labelmap lm.pbtxt   # fine
sfdet predict clip.mp4 --precision fp64
```

Fine-tune with `sfdet trian --config x.yaml`, or `sfdet data check --cofig configs/toy/data.yaml`;
`--render` draws, `--boxs FILE` reads boxes.
Speed: `data.cache=ram` and `train.precison: auto`, the key
`model.alpah`; files such as annotations/train.csv and modules such as `sfdet.data.video` are not keys.
"""


def test_the_checker_names_the_line_and_the_bad_key_flag_or_subcommand():
    problems = readme_problems(SAMPLE, name="SAMPLE.md")
    joined = "\n".join(problems)
    expected = [
        ("SAMPLE.md:4:", "unknown config key 'model.init' (did you mean 'train.init'?)"),
        ("SAMPLE.md:4:", "'sfdet train' has no option '--no-progres' (did you mean '--no-progress'?)"),
        ("SAMPLE.md:7:", "does not parse: sfdet predict: error: argument --precision: invalid choice: 'fp64'"),
        ("SAMPLE.md:10:", "unknown subcommand 'trian' (did you mean 'train'?)"),
        ("SAMPLE.md:10:", "'sfdet data check' has no option '--cofig' (did you mean '--config'?)"),
        ("SAMPLE.md:11:", "'--boxs' is no option of any sfdet command or script (did you mean '--boxes'?)"),
        ("SAMPLE.md:12:", "`train.precison`: unknown config key 'train.precison' (did you mean 'train.precision'?)"),
        ("SAMPLE.md:13:", "`model.alpah`: unknown config key 'model.alpah' (did you mean 'model.alpha'?)"),
    ]
    for line, message in expected:
        assert any(p.startswith(line) and message in p for p in problems), f"{line} {message}\nnot in:\n{joined}"
    assert len(problems) == len(expected), joined  # nothing else: eval line, --render, data.cache, file/module names


def test_a_config_file_that_does_not_load_is_reported():
    command = Command(1, "", ["train", "--config", "configs/toy/slowfast_tiny.yaml", "train.precision=fp64"], True)
    assert any(p.startswith("config does not load:") and "train.precision" in p for p in command_problems(command))
    command = Command(1, "", ["train", "--config", "configs/toy/missing.yaml"], True)
    assert command_problems(command) == ["config file not found: configs/toy/missing.yaml"]


# --------------------------------------------------------------------------
# Test: the Quick start runs
# --------------------------------------------------------------------------


def quick_start_block(text: str) -> list[ShellLine]:
    """The first shell block after the `## Quick start` heading."""
    start = re.search(r"^##\s+Quick start.*$", text, re.M)
    assert start, "README.md has no '## Quick start' section"
    offset = _line_of(text, start.start())
    for block in shell_blocks(text):
        if block and block[0].line > offset:
            return block
    raise AssertionError("README.md's Quick start has no ```bash block")


def _expand(tokens: list[str], where: str) -> list[str]:
    out = []
    for token in tokens:
        if any(c in token for c in "*?[") and not token.startswith("-"):
            matches = sorted(glob.glob(token))
            assert matches, f"{where}: '{token}' matches no file"
            out.extend(matches)
        else:
            out.append(token)
    return out


def _generate_quick_toy(out_dir: Path) -> Path:
    try:
        from sfdet.toy import generate_toy_dataset
    except ImportError:
        from sfdet.data.toy import generate_toy_dataset
    return generate_toy_dataset(out_dir, quick=True)


def _with_tiny_options(argv: list[str], extra: list[str]) -> list[str]:
    """argv + extra: an option of `extra` replaces the README's value of it; `key=value` overrides go right after
    the README's last override (argparse reads one run of positionals: `a=1 --flag b=2` is an error)."""
    argv = list(argv)
    options = [e for e in extra if not OVERRIDE_RE.match(e)]
    overrides = [e for e in extra if OVERRIDE_RE.match(e)]
    for i, flag in enumerate(options):
        if flag.startswith("--") and flag in argv:
            j = argv.index(flag)
            takes_value = i + 1 < len(options) and not options[i + 1].startswith("--")
            del argv[j: j + (2 if takes_value else 1)]
    if overrides:
        last = max((i for i, a in enumerate(argv) if OVERRIDE_RE.match(a)), default=None)
        assert last is not None, f"the README's command has no key=value override to add {overrides} to"
        argv[last + 1: last + 1] = overrides
    return argv + options


def test_readme_quick_start_runs_on_the_quick_toy_set(tmp_path, monkeypatch, capsys):
    """Each Quick start command, in order, in a temporary folder; only the data size and run length change."""
    block = quick_start_block(README.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    ran: list[str] = []
    timings: list[str] = []
    for step in block:
        where = f"README.md:{step.line}: `{step.text}`"
        started = time.perf_counter()
        argv = _sfdet_argv(step.tokens)
        if argv is None:  # shell: only `cat A B ... > OUT` is understood
            tokens = step.tokens
            assert tokens[0] == "cat" and tokens[-2] == ">", f"{where}: the test runs only sfdet and `cat ... > FILE`"
            sources = _expand(tokens[1:-2], where)
            Path(tokens[-1]).write_text("".join(Path(s).read_text(encoding="utf-8") for s in sources), encoding="utf-8")
            assert Path(tokens[-1]).stat().st_size > 0, f"{where}: empty {tokens[-1]}"
            ran.append("cat")
            continue
        name = argv[0]
        if name == "toy-data":
            assert not command_problems(Command(step.line, step.text, argv, True)), where
            out_dir = next(a for a in argv[1:] if not a.startswith("-"))
            root = _generate_quick_toy(Path(out_dir))
            assert (root / "meta.json").is_file(), where
            ran.append(name)
            timings.append(f"{name} {time.perf_counter() - started:.1f} s")
            continue
        argv = _expand(argv, where)
        if name == "train":
            argv = _with_tiny_options(argv, ["--no-progress", *TINY_TRAIN])
        elif name == "predict":
            argv = _with_tiny_options(argv, TINY_PREDICT)
        capsys.readouterr()
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        captured = capsys.readouterr()
        assert code == 0, f"{where}: exit {code}\nran: sfdet {' '.join(argv)}\n{captured.out[-3000:]}\n{captured.err[-3000:]}"
        _check_outputs(name, argv, captured.out, where)
        ran.append(" ".join(argv[:2]) if name == "data" else name)
        timings.append(f"{name} {time.perf_counter() - started:.1f} s")
    for needed in ("toy-data", "data check", "train", "plot", "predict", "eval"):
        assert needed in ran, f"README.md's Quick start no longer runs `sfdet {needed}` (ran: {ran})"
    print("quick start:", ", ".join(timings))


def _option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _positionals(argv: list[str]) -> list[str]:
    """Arguments that are neither options nor their values nor overrides (sfdet's options all take one value
    except the switches named here)."""
    switches = {"--render", "--resume", "--no-progress", "--fresh", "--quick", "--overwrite", "--non-strict"}
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg.startswith("--"):
            skip = arg not in switches and "=" not in arg
        elif "=" not in arg:
            out.append(arg)
    return out


def _check_outputs(name: str, argv: list[str], out: str, where: str) -> None:
    if name == "train":
        from sfdet.typed_config import parse_overrides

        default = Path("runs") / Path(_option(argv, "--config")).stem  # `sfdet train`'s default run dir
        run_dir = Path(dict(parse_overrides([a for a in argv if OVERRIDE_RE.match(a)])).get("output_dir", default))
        for file in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt"):
            assert (run_dir / file).is_file(), f"{where}: no {run_dir / file}"
    elif name == "plot":
        target = Path(_option(argv, "--out") or Path(_positionals(argv)[0]) / "curves.png")
        assert target.is_file() and target.stat().st_size > 0, f"{where}: no {target}"
    elif name == "predict":
        out_dir = _option(argv, "--out")
        for video in map(Path, _positionals(argv)):
            folder = Path(out_dir) if out_dir else video.parent
            suffixes = [".csv", ".tracks.csv", ".jsonl"] + ([".pred.mp4"] if "--render" in argv else [])
            for suffix in suffixes:
                path = folder / f"{video.stem}{suffix}"
                assert path.is_file() and path.stat().st_size > 0, f"{where}: no {path}"
            records = [json.loads(line) for line in (folder / f"{video.stem}.jsonl").read_text().splitlines()]
            assert records and records[-1].get("type") == "end", f"{where}: {path.name} has no end record"
    elif name == "eval":
        pred = Path(_option(argv, "--pred"))
        folder = Path(_option(argv, "--out") or pred.parent)
        for suffix in ("_eval.json", "_eval.png"):
            assert (folder / f"{pred.stem}{suffix}").is_file(), f"{where}: no {folder / (pred.stem + suffix)}"
        assert re.search(r"mAP.*=\s*[0-9.]+", out), f"{where}: no mAP line in\n{out[-2000:]}"
