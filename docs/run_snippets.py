"""Run the code blocks of the docs pages and compare what they print with what the pages show.

    python docs/run_snippets.py                        # check README.md and docs/*.md
    python docs/run_snippets.py docs/walkthrough.md    # one page
    python docs/run_snippets.py --update               # re-run, rewrite the outputs the pages show

How a page is read (a marker is an HTML comment on its own line just above a code fence; GitHub does
not show it; several markers may stand one above the other):

- A ```python block runs. The blocks of a page run in order in one namespace, like one Python session.
  - With `>>>` prompts it is a session: the lines under each prompt are its output, compared with
    runs of whitespace made equal (a long repr may be wrapped on the page).
  - Without prompts it is a script: its output is the bare ``` block that starts on the line right
    after it (if there is one), compared line by line.
  - It says in its first line what it continues from: `# continues from section 1: tok, task`.
    Every name the block uses without defining or importing it must be named after that colon, and
    must exist when the block starts; a block with no such line must be self-contained.
- Other blocks (```bash, bare ```) are not run, unless marked `<!-- docs: run -->`: such a block is
  run with bash from the repository root, and its stdout and stderr together are compared with the
  bare block right after it.
- `<!-- docs: skip: why -->` a python block that is not run (signatures, a GPU, the hub).
- `<!-- docs: needs PATH -->` run the block only when PATH exists (relative to the repository root;
  `~` and `$VARS` are expanded), else report it as skipped.
- `<!-- docs: vary REGEX -->` the output depends on the machine: what REGEX matches (timings, temporary
  paths) is masked on both sides; `<!-- docs: vary -->` alone: the output is not compared at all.

A link to code names what it links to, not a line: [`GPT.generate`](model.py) (no `#L123`). The checker
imports the module and fails when the name is gone (so renaming code fails until the page follows).

The checker exits 1 and names the page, line and difference when a shown output no longer matches;
`--update` writes what the code prints now into the page (outputs that still match, up to
whitespace, are left as written).
"""
import argparse
import ast
import builtins
import contextlib
import io
import itertools
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!--\s*docs:\s*(\w+)\s*:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    lang: str
    start: int                  # index of the opening fence line
    end: int                    # index of the closing fence line
    lines: list
    markers: dict = field(default_factory=dict)
    output: "Block | None" = None


def parse(text):
    """The page's fenced blocks, each with its markers and, for runnable ones, its output block."""
    lines, blocks, i = text.split("\n"), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise SystemExit(f"unclosed code fence at line {i + 1}")
        markers, k = {}, i - 1
        while k >= 0 and MARKER.match(lines[k]):
            name, arg = MARKER.match(lines[k]).groups()
            markers[name] = arg
            k -= 1
        blocks.append(Block(m.group(1), i, j, lines[i + 1:j], markers))
        i = j + 1
    for a, b in zip(blocks, blocks[1:]):
        if b.lang == "" and b.start == a.end + 1 and runs(a) and not is_session(a):
            a.output = b
    return lines, blocks


def runs(block):
    return "skip" not in block.markers and (block.lang == "python" or "run" in block.markers)


def is_session(block):
    return block.lang == "python" and any(line.startswith(">>>") for line in block.lines)


def session(block):
    """A >>> block as (header lines, [(source, want lines, first want line index in block.lines)])."""
    header, examples, cur = [], [], None
    for n, line in enumerate(block.lines):
        if line.startswith(">>>"):
            cur = [line[4:], [], n + 1]
            examples.append(cur)
        elif cur is not None and line.startswith("...") and not cur[1]:
            cur[0] += "\n" + line[4:]
            cur[2] = n + 1
        elif cur is None:
            header.append(line)
        else:
            cur[1].append(line)
    for ex in examples:
        while ex[1] and not ex[1][-1].strip():
            ex[1].pop()
    return header, [tuple(ex) for ex in examples]


def free_names(source):
    """Names the code reads but never binds (nor imports), builtins aside."""
    tree, bound, read = ast.parse(source), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return read - bound - set(dir(builtins))


def continued(first_line):
    """The names a block's first line says it continues with ('# continues from X: a, b')."""
    m = re.match(r"\s*#\s*continues\b.*:\s*(.*)$", first_line or "")
    return None if m is None else {n.strip() for n in m.group(1).split(",") if n.strip()}


LINK = re.compile(r"\[`([\w.]+)(?:\(\))?`\]\(((?:\.\./)?(\w+)\.py)(#[^)]*)?\)")


def check_links(text, where):
    """Every [`name`](module.py) link names something module.py defines, without a line anchor."""
    import importlib
    problems = []
    for n, line in enumerate(text.split("\n")):
        for m in LINK.finditer(line):
            name, target, module, anchor = m.groups()
            if name.endswith(".py"):  # a link to the file itself
                name = module
            if anchor:
                problems.append(f"{where(n)}: link {m.group(0)} points at a line; link the name only")
            try:
                obj = importlib.import_module(module)
            except ImportError as e:
                problems.append(f"{where(n)}: link {m.group(0)}: {e}")
                continue
            for part in ([] if name == module else name.removeprefix(module + ".").split(".")):
                obj = getattr(obj, part, None)
            if obj is None:
                problems.append(f"{where(n)}: link {m.group(0)}: {module}.py has no {name}")
    return problems


def masked(text, block):
    vary = block.markers.get("vary")
    lines = [line.rstrip() for line in text.rstrip().split("\n")]
    return "\n".join(re.sub(vary, "…", line) if vary else line for line in lines)


def run_python(source, namespace, mode):
    """exec (mode 'exec') or interactive echo (mode 'single'); (printed text, error or None)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(source + "\n", "<docs>", mode), namespace)
        except Exception:
            return out.getvalue(), traceback.format_exc(limit=-3)
    return out.getvalue(), None


def check_page(path, update=False):
    """Run one page; return (problems, skipped blocks, the page rewritten or None). With update, the
    outputs that differ are rewritten instead of reported."""
    text = path.read_text()
    lines, blocks = parse(text)
    namespace = {"__name__": "__docs__"}
    problems, skipped, edits = [], [], []  # edits: (first line, last line + 1, new lines)
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    where = lambda n: f"{name}:{n + 1}"
    os.chdir(ROOT)  # the snippets use paths relative to the repository root
    problems += check_links(text, where)
    for b in blocks:
        if not runs(b):
            continue
        need = b.markers.get("needs")
        if need and not (ROOT / os.path.expandvars(os.path.expanduser(need))).exists():
            skipped.append(f"{where(b.start)}: needs {need}")
            continue
        if b.lang != "python":  # a shell block marked run
            r = subprocess.run(["bash", "-c", "\n".join(b.lines)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            error = f"exit status {r.returncode}\n{r.stdout[-2000:]}" if r.returncode else None
            printed = r.stdout
        else:
            error, printed = run_python_block(b, namespace, where, problems, edits)
        if error:  # later blocks would fail for want of what this one defines
            problems.append(f"{where(b.start)}: {error}")
            break
        if printed is not None:
            compare_output(b, printed, where, problems, edits)
    new = None
    if update and edits:
        for first, stop, new_lines in sorted(edits, reverse=True):
            lines[first:stop] = new_lines
        new = "\n".join(lines)
        problems = [p for p in problems if not p.endswith(OUTDATED)]
    return problems, skipped, new


OUTDATED = "\n(python docs/run_snippets.py --update rewrites it)"


def run_python_block(b, namespace, where, problems, edits):
    """Check what the block says it continues from, then run it: a script as a whole (returns
    (error, printed)), a >>> session prompt by prompt, comparing each output (returns (error, None))."""
    header, examples = session(b) if is_session(b) else (b.lines[:1], None)
    source = "\n".join(ex[0] for ex in examples) if examples is not None else "\n".join(b.lines)
    stated = continued(header[0] if header else None) or set()
    try:
        missing = free_names(source) - stated
    except SyntaxError as e:
        return f"not valid Python ({e}); mark it <!-- docs: skip: why -->", None
    if missing:
        problems.append(f"{where(b.start)}: uses {', '.join(sorted(missing))} without defining them; "
                        f"start the block with '# continues from ...: {', '.join(sorted(missing))}'")
    unknown = sorted(n for n in stated if n not in namespace)
    if unknown:
        problems.append(f"{where(b.start)}: continues with {', '.join(unknown)}, which no earlier block defines")
    if examples is None:
        printed, error = run_python(source, namespace, "exec")
        return (f"raised\n{error}" if error else None), printed
    for src, want, at in examples:
        printed, error = run_python(src, namespace, "single")
        if error:
            return f">>> {src.splitlines()[0]} (line {b.start + at}) raised\n{error}", None
        got, shown = masked(printed, b), masked("\n".join(want), b)
        if b.markers.get("vary") != "" and got.split() != shown.split():  # whitespace runs are equal
            problems.append(f"{where(b.start + at)}: >>> {src.splitlines()[0]}\n  page: {shown!r}\n"
                            f"  now:  {got!r}{OUTDATED}")
            first = b.start + 1 + at
            edits.append((first, first + len(want), [line.rstrip() for line in printed.rstrip().split("\n")]
                          if printed.strip() else []))
    return None, None


def compare_output(b, printed, where, problems, edits):
    """Compare a script's printed text with the output block under it (if any), masking what may vary."""
    if b.output is None or b.markers.get("vary") == "":
        return
    got, shown = masked(printed, b), masked("\n".join(b.output.lines), b)
    if got != shown:
        got, shown = got.split("\n"), shown.split("\n")
        diff = next(n for n, (x, y) in enumerate(itertools.zip_longest(got, shown)) if x != y)
        problems.append(f"{where(b.output.start + 1 + diff)}: output differs from line {diff + 1} of the "
                        f"block on\n  page: {shown[diff:diff + 3]}\n  now:  {got[diff:diff + 3]}{OUTDATED}")
        new = [line.rstrip() for line in printed.rstrip().split("\n")]
        if len(new) == len(b.output.lines):  # keep the page's lines that only differ where they may vary
            new = [old if masked(old, b) == masked(line, b) else line for old, line in zip(b.output.lines, new)]
        edits.append((b.output.start + 1, b.output.end, new))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="*", help="markdown files (default: README.md and docs/*.md)")
    p.add_argument("--update", action="store_true", help="rewrite the outputs the pages show")
    args = p.parse_args(argv)
    pages = [Path(x).resolve() for x in args.pages] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    sys.path.insert(0, str(ROOT))
    failed = False
    for page in pages:
        problems, skipped, new = check_page(page, args.update)
        for s in skipped:
            print(f"skipped {s}")
        if new is not None:
            page.write_text(new)
            print(f"{page}: outputs rewritten; check the diff")
        for problem in problems:
            print(problem)
        failed |= bool(problems)
        if not problems:
            print(f"{page}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
