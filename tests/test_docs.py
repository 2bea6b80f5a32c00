"""Every command line shown in README.md and docs/*.md composes: each `python -m wantrain COMMAND ...` of a fenced
code block runs through the CLI's own `main()` in this process with `--cfg job` appended (Hydra composes the config,
prints it and exits; nothing is trained, loaded or written). Lines are parametrized one by one, so a failure names
the file, the line number and the command. Links between the documents (`file#anchor`) must resolve too."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import NamedTuple

import pytest
from in_process import run_main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# the other READMEs: their links are checked too (their command lines are not part of this test)
LINKED = [*DOCS, REPO / "data" / "README.md", REPO / "slurm" / "README.md"]

# Shell programs of the documented command lines that are not Hydra apps, each with what checks it instead. A fenced
# `bash` line that is neither a wantrain invocation, an sbatch of slurm/*.sbatch, nor one of these fails the test:
# a new kind of command line must be composed here or listed with its reason.
NOT_HYDRA = {
    "python3": "`python3 -m venv .venv`: the install command (.ci/run runs it)",
    ".venv/bin/pip": "the install command (.ci/run runs it)",
    "pip": "installs an extra (`pip install -e '.[slurm]'`)",
    ".venv/bin/ruff": "the lint command (.ci/run runs it)",
    ".venv/bin/python -m pytest": "the test command (.ci/run runs it) and its tiers",
    "scripts/gpu-check.sh": "a shell script of wantrain launches; tests/test_gpu_check.py runs it on CPU",
    "tensorboard": "TensorBoard's own CLI",
    "hf": "the Hugging Face CLI (`hf download`: weights, where there is internet)",
    "sudo": "`sudo bash slurm/local-cluster.sh start`: the local SLURM cluster (.ci/run starts it)",
}

# Lines that cannot compose as written, with the reason (none at present: placeholders are only values, and a bare
# `...` token, "your other arguments", is dropped). Keys are (file name, command line as extracted).
ALLOWED_TO_FAIL: dict[tuple[str, str], str] = {}

# `...` alone stands for "the rest of your arguments" (e.g. the shard paths of the line above it).
ELLIPSIS = "..."


class DocLine(NamedTuple):
    """One logical line of a fenced code block: where it is, its language, its text (continuations joined)."""

    path: Path
    lineno: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.lineno}"


def fenced_lines(path: Path) -> list[DocLine]:
    """The logical lines of every fenced block in `path` (backslash continuations joined, blank lines dropped)."""
    out, lang, start, buf = [], None, 0, ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
            buf = ""
            continue
        if lang is None:
            continue
        if not buf:
            start = number
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        text, buf = (buf + line).strip(), ""
        if text:
            out.append(DocLine(path, start, lang, text))
    return out


def commands(tokens: list[str]) -> list[list[str]]:
    """Split a shell line's tokens at `&&`, `||`, `;` and `|` into simple commands, environment assignments dropped."""
    out, current = [], []
    for token in [*tokens, ";"]:
        if token in ("&&", "||", ";", "|"):
            while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
                current.pop(0)
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    return out


def wantrain_args(command: list[str]) -> list[str] | None:
    """The arguments after `-m wantrain` (python, .venv/bin/python, torchrun ...), or after an sbatch of
    slurm/fit*.sbatch (the scripts run `wantrain fit` with them); None for any other command."""
    for i, token in enumerate(command[:-1]):
        if token == "-m" and command[i + 1] == "wantrain":
            return command[i + 2:]
    if command[0] == "sbatch":
        script = next((i for i, t in enumerate(command) if re.fullmatch(r"slurm/fit[\w-]*\.sbatch", t)), None)
        if script is not None:
            # what the scripts add in front of the user's arguments (slurm/fit.sbatch: srun ... -m wantrain fit ...)
            return ["fit", "++trainer.devices=8", "++trainer.num_nodes=1", *command[script + 1:]]
    return None


def not_hydra(command: list[str]) -> str | None:
    """The listed reason when `command` is a documented non-Hydra program."""
    line = " ".join(command)
    return next((why for prog, why in NOT_HYDRA.items() if line == prog or line.startswith(prog + " ")), None)


class Invocation(NamedTuple):
    doc: DocLine
    args: list[str]

    @property
    def id(self) -> str:
        return f"{self.doc.id} {' '.join(self.args)[:80]}"


def collect() -> tuple[list[Invocation], list[tuple[DocLine, str]]]:
    """Every wantrain invocation of the documents, and the `bash` lines that are no known kind of command."""
    found, unknown = [], []
    for path in DOCS:
        for doc in fenced_lines(path):
            if doc.text.startswith("#"):
                continue
            try:
                tokens = shlex.split(doc.text, comments=True)
            except ValueError:
                tokens = None
            if tokens is None:
                if "-m wantrain" in doc.text or doc.lang == "bash":
                    unknown.append((doc, "not a shell line (unbalanced quotes?)"))
                continue
            for command in commands(tokens):
                args = wantrain_args(command)
                if args is not None:
                    found.append(Invocation(doc, args))
                elif doc.lang == "bash" and not_hydra(command) is None:
                    unknown.append((doc, " ".join(command)))
    return found, unknown


INVOCATIONS, UNKNOWN = collect()


def test_every_bash_line_is_a_known_kind_of_command():
    """A fenced `bash` line is a wantrain invocation (composed below) or a listed non-Hydra program."""
    assert not UNKNOWN, "command lines neither composed nor listed in NOT_HYDRA:\n" + "\n".join(
        f"  {doc.id}: {what}" for doc, what in UNKNOWN)


def test_the_documents_show_the_commands():
    """The extraction finds the documents' command lines (a broken parser must not pass by finding none)."""
    by_command = {inv.args[0] for inv in INVOCATIONS if inv.args}
    assert {"fit", "validate", "test", "sample", "encode", "bench", "shards"} <= by_command
    assert len(INVOCATIONS) >= 70
    readme = (REPO / "README.md").read_text()
    # the install and test commands .ci/run runs, exactly
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'" in readme
    ci_test = next(line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                   if line.strip().startswith(".venv/bin/python -m pytest"))
    assert ".venv/bin/ruff check .\n" in readme and f"\n{ci_test}\n" in readme


def hydra_ready(args: list[str]) -> list[str]:
    """The documented arguments as one `--cfg job` run: the `...` placeholder dropped; a sweep (`-m`, `a=1,2`)
    becomes its first point, since Hydra prints one composed config and `--cfg` does not combine with `-m`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in args if a != ELLIPSIS]
    cfg = ["--cfg", "job"]
    if "-m" not in args and "--multirun" not in args:
        return [*args, *cfg]
    args = [a for a in args if a not in ("-m", "--multirun")]
    parser = OverridesParser.create()
    out = []
    for arg in args:
        if "=" in arg and not arg.startswith("-"):
            override = parser.parse_override(arg)
            if override.is_sweep_override():
                arg = f"{override.get_key_element()}={next(override.sweep_string_iterator())}"
        out.append(arg)
    return [*out, *cfg]


def training_overrides(args: list[str]) -> list[str] | None:
    """For `bench ... bench.overrides=[...]` (and `bench plan`, which moves its training overrides there): those
    training overrides, to compose against `fit`'s config as well; None when there are none."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from wantrain.commands.argv import plan_overrides

    if args[:1] != ["bench"]:
        return None
    rest = [a for a in args[2:] if a != ELLIPSIS]
    if args[1:2] == ["plan"]:
        rest = plan_overrides(rest)
    for arg in rest:
        if arg.startswith("bench.overrides="):
            value = OverridesParser.create().parse_override(arg).value()
            return [str(v) for v in value]
    return None


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder to launch from: `--cfg job` must leave it empty."""
    return tmp_path_factory.mktemp("docs")


def compose(args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`python -m wantrain ARGS` in this process; its exit code, stdout and stderr."""
    code = run_main(args, cwd)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=[inv.id for inv in INVOCATIONS])
def test_documented_command_line_composes(invocation: Invocation, launch_dir: Path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    key = (invocation.doc.path.name, invocation.doc.text)
    if key in ALLOWED_TO_FAIL:
        pytest.skip(ALLOWED_TO_FAIL[key])
    args = hydra_ready(invocation.args)
    code, out, err = compose(args, launch_dir, capsys)
    assert code == 0 and out.strip(), (f"{invocation.doc.id}: `python -m wantrain {' '.join(args)}` exited {code}:\n"
                                       f"{err.strip() or out.strip()}")
    train = training_overrides(invocation.args)
    if train is not None:
        code, out, err = compose(["fit", *train, "--cfg", "job"], launch_dir, capsys)
        assert code == 0, f"{invocation.doc.id}: its training overrides {train} do not compose for fit:\n{err.strip()}"
    assert not any(launch_dir.iterdir()), f"--cfg job wrote into the launch folder: {list(launch_dir.iterdir())}"


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a document's headings (outside fenced blocks)."""
    found, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


@pytest.mark.parametrize("path", LINKED, ids=[str(p.relative_to(REPO)) for p in LINKED])
def test_links_between_documents_resolve(path: Path):
    """Every relative link `[..](FILE#ANCHOR)` names an existing file and one of its headings."""
    broken = []
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO)}")
    assert not broken, f"{path.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg=job"]])
def test_bench_plan_with_cfg_job(launch_dir: Path, capsys, flags):
    """`bench plan +experiment=NAME --cfg job` prints the composed bench config, as `--cfg job` does elsewhere (the
    flag and its value stay out of bench.overrides)."""
    code, out, err = compose(["bench", "plan", "+experiment=i2v_tiny", *flags], launch_dir, capsys)
    assert code == 0, err
