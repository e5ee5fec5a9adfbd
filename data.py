"""
Everything between raw files and token tensors: the tasks (GSM8K, CommonsenseQA, MMLU and
`arith`, our built-in word problems), answer checking, tokenizers (on tiktoken), padded batches
with loss masks, and careful downloads.

    task = get_task("gsm8k")
    train = task.load("train")   # [Example], downloaded on first use (data_dir=: a local copy)
    task.target(train[0])   # 'Natalia sold 48/2 = 24 clips in May.\n...\n#### 72'
    task.is_correct("so 48+24 = 72\n#### 72", train[0])   # True

Every defect in a data file is a DataError: one line naming the file, line and field.
Downloaded content is only ever parsed (json, csv), never eval'd, exec'd or unpickled.
"""

import argparse
import ast
import base64
import csv
import errno
import functools
import hashlib
import http.client
import itertools
import json
import operator
import os
import random
import re
import sys
import tarfile
import tempfile
import unicodedata
import urllib.request
import warnings
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import tiktoken
import torch

TASKS = ("arith", "gsm8k", "csqa", "mmlu")
MAX_LINE = 1 << 20  # bytes; a longer "line" is a corrupt file, not a question


class DataError(ValueError):
    """A missing or malformed data file: one line naming the file, line and field at fault.
    (model.WeightsError, the same for weights, is one too.)"""


# Errors raised on purpose: bad data or weights, a failed download, out of memory, a folder that
# cannot be written. Anything else is a bug and keeps its traceback.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR)


def cli(main, prog=None):
    """Run main() as a command: a deliberate error becomes one line `prog: error: ...` on stderr
    and exit status 1. What was written before it (checkpoints, metrics) stays as it was."""
    prog = prog or Path(sys.argv[0]).name
    try:
        main()
    except SystemExit as e:  # sys.exit("message") from deeper down gets the prefix too
        if isinstance(e.code, str) and ": error: " not in e.code:
            sys.exit(f"{prog}: error: {e.code}")
        raise
    except DataError as e:
        sys.exit(f"{prog}: error: {e}")
    except torch.OutOfMemoryError as e:  # "CUDA out of memory. Tried to allocate 2.00 GiB. ..."
        what = ". ".join(str(e).splitlines()[0].split(". ")[:2])
        sys.exit(f"{prog}: error: out of memory ({what}); lower --batch-size (raise --grad-accum "
                 "to keep the batch size) or --max-turn-tokens; checkpoints already written stay, "
                 "and --resume continues from them")
    except OSError as e:
        if e.errno not in NOT_WRITABLE:
            raise
        sys.exit(f"{prog}: error: " + (f"{e.filename}: {e.strerror}" if e.filename else str(e)))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def at_least(low, kind=int):
    """An argparse type for every command: a number (an int, or `kind`) no smaller than `low`."""
    def parse(text):
        if (value := kind(text)) < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


@dataclass
class Example:
    question: str    # as shown to the model (multiple choice: question + lettered choices)
    rationale: str   # gold reasoning, without the final "#### N" line ("" when the set has none)
    answer: str      # gold final answer: a normalised number as a string, or a letter
    choices: list[str] | None = None
    id: str = ""
    calc_rationale: str = ""  # gsm8k only: the rationale with its <<a*b=c>> calculator notes


# -----------------------------------------------------------------------------
# Files: a cache folder, writes and HTTPS downloads that never leave half a file, robust readers.

def cache_dir(*parts):
    return Path(os.environ.get("SAIE_CACHE") or "~/.cache/saie").expanduser().joinpath(*parts)


def write_atomic(path, content):
    """Write path all or nothing: content (text, bytes, or write(f) filling a binary file) goes to
    a temp file beside it that one rename puts in place (killed before: at worst a *.tmp stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def download(url, path, sha256=None, token=None):
    """Fetch url into path over HTTPS (write_atomic), sha256 checked where given. A file already
    there is kept when it has that sha256 (or none was given)."""
    path = Path(path)
    if not url.startswith("https://"):
        raise DataError(f"refusing to fetch {url}: only https:// URLs are fetched")
    if path.is_file() and (sha256 is None
                           or hashlib.sha256(path.read_bytes()).hexdigest() == sha256):
        return path
    headers = {"User-Agent": "saie"} | ({"Authorization": f"Bearer {token}"} if token else {})

    def fetch(f):
        h = hashlib.sha256()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            if not r.geturl().startswith("https://"):  # a redirect must not downgrade us to http
                raise OSError(f"redirected to {r.geturl()}")
            while chunk := r.read(1 << 20):
                f.write(chunk)
                h.update(chunk)
            size = r.headers.get("Content-Length")  # read() ends quietly when the server hangs up
            if size is not None and f.tell() != int(size):
                raise OSError(f"connection closed after {f.tell()} of {size} bytes")
        if sha256 and h.hexdigest() != sha256:
            raise ValueError(f"sha256 {h.hexdigest()} is not the expected {sha256}")
    try:
        return write_atomic(path, fetch)
    except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, HTTPError: OSErrors
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"could not fetch {url} ({reason}); get it another way and pass the local "
                        f"copy (--data-dir for data sets, a local directory for models)") from None


def hub_file(repo, filename):
    """One file of a Hugging Face hub repo, cached under $SAIE_CACHE/hub (gated repos: HF_TOKEN)."""
    parts = [*repo.split("/"), *filename.split("/")]
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or any(p in ("", ".", "..") for p in parts):
        raise DataError(f"not a hub repo and file: {repo!r}, {filename!r}")
    token = os.environ.get("HF_TOKEN")
    url = f"https://huggingface.co/{repo}/resolve/main/{filename}"
    try:  # a cached file is returned as it is
        return download(url, cache_dir("hub", repo, filename), token=token)
    except DataError as e:
        gated = "" if token else "; gated repos (meta-llama/...) also need HF_TOKEN"
        raise DataError(f"{e}{gated}") from None


def _json_object(raw, where):
    """raw (bytes or text) as a JSON object; a defect is a DataError naming `where`."""
    try:
        obj = json.loads(raw)  # json reads bytes as UTF-8 (a BOM allowed) or UTF-16/32
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: malformed JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a JSON object (got {type(obj).__name__})")
    return obj


def _read_json(path, missing=None):
    """A JSON object file as a dict; `missing` when there is no such file (None: an error)."""
    if missing is not None and not path.is_file():
        return missing
    try:
        return _json_object(path.read_bytes(), path)
    except OSError as e:
        raise DataError(f"{path}: {e.strerror}") from None


def read_jsonl(path):
    """Yield (line number, object) for each non-blank line of a JSON-lines file."""
    n = lineno = 0
    with open(path, "rb") as f:
        while raw := f.readline(MAX_LINE + 1):  # capped: a gigantic line cannot eat the memory
            lineno += 1
            if len(raw) > MAX_LINE:
                raise DataError(f"{path}:{lineno}: line longer than {MAX_LINE} bytes")
            if raw.strip():
                n += 1
                yield lineno, _json_object(raw, f"{path}:{lineno}")
    if n == 0:
        raise DataError(f"{path}:{lineno + 1}: no examples (the file is empty)")


def _field(obj, key, where, kind=str):
    """obj[key] checked for presence and type; `where` is 'file:line' for the message."""
    value = obj
    for k in key.split("."):  # "question.stem" reaches into nested objects
        if not isinstance(value, dict) or k not in value:
            raise DataError(f"{where}: field '{key}' is missing")
        value = value[k]
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise DataError(f"{where}: field '{key}' should be a non-empty {kind.__name__}, "
                        f"got {type(value).__name__} {str(value)[:40]!r}")
    return value


# -----------------------------------------------------------------------------
# Numeric answers follow lm-evaluation-harness: the strict "#### N" form first, else the last
# number in the text; commas, "$" and a trailing "." go; values compare numerically.

NUMBER = r"-?\$?\d(?:[\d,]*\d)?(?:\.\d+)?"
STRICT = re.compile(r"####\s*(" + NUMBER + ")")


def normalize_number(s):
    """'$1,000.00' -> '1000', '-3' -> '-3', '2.50' -> '2.5'; None if s is not a number."""
    s = s.strip().replace(",", "").replace("$", "").replace("\u2212", "-").rstrip(".")
    try:
        d = Decimal(s)
    except ArithmeticError:
        return None
    if not d.is_finite():
        return None
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")


def _num(s):
    n = normalize_number(s)
    return None if n is None else Fraction(n)


def _fmt(x):
    return str(x.numerator) if x.denominator == 1 else f"{float(x):.2f}".rstrip("0").rstrip(".")


# -----------------------------------------------------------------------------
# A tiny calculator for GSM8K's <<48/2=24>> notes: numbers, + - * / and parentheses, in exact
# fractions. Python's parser reads the expression and we evaluate its few allowed nodes: no eval().

DECIMAL = r"\d+(?:\.\d*)?|\.\d+"
CALC_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
            ast.Div: operator.truediv, ast.UAdd: operator.pos, ast.USub: operator.neg}


def calc(expr):
    expr = expr.strip()
    if len(expr) > 400:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise ValueError(f"not an expression: {expr!r}") from None

    def value(node):
        op, text = CALC_OPS.get(type(getattr(node, "op", None))), ast.get_source_segment(expr, node)
        if isinstance(node, ast.Constant) and re.fullmatch(DECIMAL, text):
            return Fraction(text)
        if isinstance(node, ast.UnaryOp) and op:
            return op(value(node.operand))
        if isinstance(node, ast.BinOp) and op:
            left, right = value(node.left), value(node.right)
            if op is operator.truediv and right == 0:
                raise ValueError("division by zero")
            return op(left, right)
        raise ValueError(f"unexpected {text!r} in {expr!r}")
    return value(tree)


# -----------------------------------------------------------------------------
# Tasks: one small interface per data set.

class Task:
    name: str
    splits: tuple[str, ...]   # the last one is the split we evaluate on
    urls: dict                # split -> (url, sha256 or None), fetched when there is no data_dir
    files: dict               # split -> its names in data_dir; the first names the cached copy
    kind, subfolders = "file", ()  # mmlu: a folder per split, also looked for under data/
    turn_tokens = 256         # the longest turn a model speaks (--max-turn-tokens overrides)

    def load(self, split, data_dir=None):
        if split not in self.splits:
            raise DataError(f"{self.name} has no split {split!r}; splits: {', '.join(self.splits)}")
        return self._load(split, self._download(split) if data_dir is None else Path(data_dir))

    def target(self, ex):
        return f"{ex.rationale}\n#### {ex.answer}"

    def _download(self, split):
        """Fetch the split into the cache; returns the folder to load it from."""
        url, sha = self.urls[split]
        return download(url, cache_dir("data", self.name, self.files[split][0]), sha256=sha).parent

    def _find(self, data_dir, split, required=True):
        """The split's file (or folder) in data_dir or data_dir/<task>: the first name found."""
        dirs = [data_dir / sub for sub in ("", self.name, *self.subfolders)]
        names, there = self.files[split], Path.is_dir if self.kind == "folder" else Path.is_file
        found = next((d / n for d in dirs for n in names if there(d / n)), None)
        if found is None and required:
            raise DataError(f"no {self.name} {split} {self.kind} ({' or '.join(names)}) in "
                            f"{', '.join(map(str, dirs))}")
        return found

    def _load(self, split, data_dir):
        """A JSON-lines file, one example per line (parse() reads one); arith, MMLU: their own."""
        path = self._find(data_dir, split)
        return [self.parse(obj, f"{path}:{lineno}", f"{split}-{i}")
                for i, (lineno, obj) in enumerate(read_jsonl(path))]


class NumberTask(Task):
    """Word problems whose answer is a number: the reasoning ends with '#### N'."""

    def extract(self, text):
        text = text.replace("\u2212", "-")
        m = STRICT.search(text)
        found = [m.group(1)] if m else re.findall(NUMBER, text)
        return normalize_number(found[-1]) if found else None

    def is_correct(self, text, ex):
        pred, gold = self.extract(text), normalize_number(ex.answer)
        return pred is not None and gold is not None and Decimal(pred) == Decimal(gold)


class GSM8K(NumberTask):
    name, splits = "gsm8k", ("train", "test")
    URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
    urls = {"train": (f"{URL}/train.jsonl",
                      "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
            "test": (f"{URL}/test.jsonl",
                     "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14")}
    files = {"train": ["train.jsonl"], "test": ["test.jsonl"]}
    NOTE = re.compile(r"<<([^<>=]+)=([^<>]+)>>")                   # <<48/2=24>>
    SHOWN = re.compile(r"\$?\d[\d,]*(?:\.\d+)?")                 # a number right after a note
    MENTION = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\w,])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")

    def __init__(self, keep_calculator=False):
        self.keep_calculator = keep_calculator  # show the <<48/2=24>> notes to the model?

    def strip(self, text):
        return text if self.keep_calculator else self.NOTE.sub("", text)

    def parse(self, obj, where, id):
        question, answer = _field(obj, "question", where), _field(obj, "answer", where)
        if "####" not in answer:
            raise DataError(f"{where}: field 'answer' has no final '#### N' line")
        rationale, final = (s.strip() for s in answer.rsplit("####", 1))
        gold = normalize_number(final)
        if gold is None:
            raise DataError(f"{where}: field 'answer': {final[:40]!r} after #### is not a number")
        return Example(question.strip(), self.strip(rationale), gold, id=id,
                       calc_rationale=rationale)

    def wrong_target(self, ex, rng):
        """Slip one calculator step and carry the error: plausible reasoning, wrong answer."""
        text = ex.calc_rationale or ex.rationale
        notes = list(self.NOTE.finditer(text))
        for k in rng.sample(range(len(notes)), len(notes)):
            slipped = self._slip(text, notes, k, ex.answer, rng)
            if slipped:
                return f"{self.strip(slipped[0])}\n#### {slipped[1]}"
        # No note to slip (or none reaches the answer): change the final answer, its last mention.
        gold = Fraction(ex.answer)
        wrong = _fmt(gold + rng.choice([-2, -1, 1, 2, 10] if gold > 2 else [1, 2, 10]))
        mentions = [m for m in self.MENTION.finditer(text) if _num(m.group()) == gold]
        if mentions:
            m = mentions[-1]
            text = text[:m.start()] + wrong + text[m.end():]
        return f"{self.strip(text)}\n#### {wrong}"

    def _slip(self, text, notes, k, gold, rng):
        """Change note k's result, then redo every later note that uses a changed value.
        Returns (text, wrong answer), or None when the slip does not reach the final answer."""
        old = _num(notes[k].group(2))
        if old is None:
            return None
        delta = Fraction(rng.choice([1, 2, 10]) * rng.choice([-1, 1]),
                         1 if old.denominator == 1 else 10)
        changed = {old: old + delta if old + delta >= 0 or old < 0 else old + abs(delta)}

        def carry(s):  # numbers (in prose or in an expression) that hold a changed value -> slipped
            return self.MENTION.sub(lambda m: _fmt(changed[v]) if (v := _num(m.group())) in changed
                                    else m.group(), s)

        out, pos = [text[:notes[k].start()]], notes[k].start()
        for j, m in enumerate(notes[k:], start=k):
            out.append(carry(text[pos:m.start()]))
            pos = m.end()
            expr, result = (m.group(1) if j == k else carry(m.group(1))), _num(m.group(2))
            if result is None:
                return None
            if j == k:
                value = changed[old]
            elif expr == m.group(1):       # a step that uses no changed value keeps its result, and
                changed.pop(result, None)  # later uses of that number mean this step, not the slip
                out.append(m.group())
                continue
            else:
                try:
                    value = changed[result] = calc(expr)
                except (ValueError, ArithmeticError):
                    return None
            out.append(f"<<{expr}={_fmt(value)}>>")
            shown = self.SHOWN.match(text, pos)  # the result as the prose shows it: '>>24 clips'
            if shown and _num(shown.group()) == result:
                out.append(("$" if shown.group().startswith("$") else "") + _fmt(value))
                pos = shown.end()
        out.append(carry(text[pos:]))
        wrong = changed.get(Fraction(gold))
        if wrong is None or Fraction(_fmt(wrong)) == Fraction(gold):
            return None
        return "".join(out), _fmt(wrong)


class MultipleChoice(Task):
    """Lettered choices in the question; no gold rationale, so the target is an answer sentence."""
    letters: str

    def target(self, ex):
        return self._sentence(ex, ex.answer)

    def wrong_target(self, ex, rng):
        wrong = [l for l in self.letters[:len(ex.choices)] if l != ex.answer]
        return self._sentence(ex, rng.choice(wrong))

    def _sentence(self, ex, letter):
        choice = ex.choices[self.letters.index(letter)].rstrip(".")
        return f"The answer is ({letter}) {choice}.\n#### {letter}"

    def extract(self, text, choices=None):
        """The letter: '#### B', 'answer is (B)', '(B)', 'B)', a bare 'B'; else the choice named."""
        L = self.letters
        for pattern, which in [(rf"####\s*\(?([{L}])\b", 0),
                               (rf"(?i:answer is|answer:)\s*\(?([{L}])\b", -1),
                               (rf"\(([{L}])\)", -1), (rf"(?:^|\s)([{L}])\)", -1),
                               (rf"^\s*([{L}])[.:]?\s*$", -1)]:
            found = re.findall(pattern, text)
            if found:
                return found[which]
        if choices:
            named = [l for l, c in zip(L, choices)
                     if re.search(rf"(?<!\w){re.escape(c.lower())}(?!\w)", text.lower())]
            if len(named) == 1:
                return named[0]
        return None

    def is_correct(self, text, ex):
        return self.extract(text, ex.choices) == ex.answer

    def example(self, question, choices, answer, id):
        choices = [c.strip() for c in choices]
        lettered = " ".join(f"({l}) {c}" for l, c in zip(self.letters, choices))
        return Example(f"{question.strip()}\n{lettered}", "", answer, choices, id)


class CommonsenseQA(MultipleChoice):
    """5-way; test labels are hidden, so we evaluate on validation. No sha256 is published for the
    s3 files: a download is checked by parsing it."""
    name, splits, letters = "csqa", ("train", "validation"), "ABCDE"
    urls = {"train": ("https://s3.amazonaws.com/commensenseqa/train_rand_split.jsonl", None),
            "validation": ("https://s3.amazonaws.com/commensenseqa/dev_rand_split.jsonl", None)}
    files = {"train": ["train_rand_split.jsonl", "train.jsonl"],
             "validation": ["dev_rand_split.jsonl", "validation.jsonl", "dev.jsonl"]}

    def parse(self, obj, where, id):
        if isinstance(obj.get("question"), dict):  # upstream: question.stem, .choices[{label,text}]
            question = _field(obj, "question.stem", where)
            choices = _field(obj, "question.choices", where, list)
            choices = [c if isinstance(c, dict) else {} for c in choices]
            labels, texts = [c.get("label") for c in choices], [c.get("text") for c in choices]
        else:  # flattened: question, choices{label: [..], text: [..]}
            question = _field(obj, "question", where)
            labels, texts = (_field(obj, f"choices.{k}", where, list) for k in ("label", "text"))
        if labels != list(self.letters) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(f"{where}: field 'choices' should be five texts labelled A-E, "
                            f"got {labels}")
        answer = _field(obj, "answerKey", where)
        if answer not in tuple(self.letters):
            raise DataError(f"{where}: field 'answerKey' should be one of A-E, got {answer!r}")
        return self.example(question, texts, answer, obj.get("id") or id)


class MMLU(MultipleChoice):
    """57 subjects, 4-way; csv without header: question, A, B, C, D, answer. No training split, and
    the paper does not say what it trained on: we train on dev + validation (about 1,800)."""
    name, splits, letters = "mmlu", ("train", "dev", "validation", "test"), "ABCD"
    url = "https://people.eecs.berkeley.edu/~hendrycks/data.tar"  # no published sha256
    files = {"dev": ["dev"], "validation": ["val", "validation"], "test": ["test"]}
    kind, subfolders = "folder", ("data",)  # data.tar unpacks to data/dev, data/val, data/test

    def _download(self, split):
        root = cache_dir("data", "mmlu")
        if not (root / "data").is_dir():
            tar = download(self.url, root / "data.tar")
            with tempfile.TemporaryDirectory(dir=root) as tmp:  # all or nothing: unpack, rename
                _extract_tar(tar, tmp)
                os.replace(Path(tmp) / "data", root / "data")
            tar.unlink()
        return root

    def _load(self, split, root):
        if split == "train":
            if self._find(root, "validation", required=False):
                return self._load("dev", root) + self._load("validation", root)
            warnings.warn(f"mmlu: no validation folder in {root}; training on dev alone")
            return self._load("dev", root)
        folder = self._find(root, split)
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise DataError(f"{folder}: no .csv files")
        return [ex for f in files for ex in self._read_csv(f, split)]

    def _read_csv(self, path, split):
        subject, out = re.sub(r"_(dev|val|validation|test)$", "", path.stem), []
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                for row in reader:
                    where = f"{path}:{reader.line_num}"
                    if len(row) != 6:
                        raise DataError(f"{where}: expected 6 columns (question, A, B, C, D, "
                                        f"answer), got {len(row)}")
                    if row[5].strip() not in tuple(self.letters):
                        raise DataError(f"{where}: field 'answer' should be one of A-D, "
                                        f"got {row[5][:20]!r}")
                    out.append(self.example(row[0], row[1:5], row[5].strip(),
                                            f"{subject}-{split}-{len(out)}"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{reader.line_num + 1}: not UTF-8 ({e.reason})") from None
            except csv.Error as e:
                raise DataError(f"{path}:{reader.line_num}: malformed csv ({e})") from None
        if not out:
            raise DataError(f"{path}:1: no examples (the file is empty)")
        return out


def _extract_tar(tar_path, dest):
    """Unpack into dest. tarfile's "data" filter refuses what could reach outside it ('../' paths,
    links out of it, devices); such an archive, or a damaged one, is one DataError."""
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as e:
        raise DataError(f"{tar_path}: not a whole, safe tar archive ({e})") from None


# -----------------------------------------------------------------------------
# arith: GSM8K-style word problems generated in code, short enough for a ~1M-parameter model
# trained from scratch on a CPU. A problem is a chain: a start value, then 1-3 operations.
# A hash of the chain ("12-4+7") picks its split, so no validation or test chain is ever seen in
# training, under any names. Validation and test hold each chain once (else it would count twice).

ARITH_MAX_OPERAND = 20               # start values and +/- operands are 2..20
ARITH_MAX_FACTOR = 10                # * and / operands are 2..10 (times tables, not long products)
ARITH_MAX_VALUE = 999                # every intermediate and final value stays in 1..999
ARITH_OPS_MIX = {1: 0.5, 2: 0.35, 3: 0.15}   # share of problems with 1, 2, 3 operations
ARITH_SIZES = {"train": 100_000, "validation": 1000, "test": 2000}
ARITH_HOLDOUT = {0: "test", 10: "validation"}  # chain hash mod 20 -> split; the other 18: train
ARITH_SEED = 1234

NAMES = {"Ann": "She", "Mia": "She", "Zoe": "She", "Lily": "She", "Emma": "She", "Sara": "She",
         "Ben": "He", "Tom": "He", "Sam": "He", "Max": "He", "Leo": "He", "Jack": "He"}
ITEMS = ("pens", "apples", "coins", "cards", "books", "stickers", "marbles", "eggs", "shells",
         "stamps", "cookies", "toys")
BOXES = ("box", "bag", "jar", "basket")
# Two scenes; {n} name, {p} pronoun, {x} items, {c} container, {a} start value, {b} operand.
SCENES = [
    dict(start=("{n} has {a} {x} .", "{n} starts with {a} {x} ."),
         ops={"+": ("{p} buys {b} more .", "{p} finds {b} more .", "{p} gets {b} more ."),
              "-": ("{p} gives away {b} .", "{p} loses {b} .", "{p} sells {b} ."),
              "*": ("{p} then has {b} times as many .", "{p} ends up with {b} times as many ."),
              "/": ("{p} keeps one in every {b} .", "{p} keeps only one in {b} .")},
         ask=("How many {x} does {n} have ?", "How many {x} does {n} have now ?")),
    dict(start=("A {c} has {a} {x} .", "There are {a} {x} in a {c} ."),
         ops={"+": ("{b} more are put in .", "{b} more are added ."),
              "-": ("{b} are taken out .", "{b} are removed ."),
              "*": ("Then there are {b} times as many .", "The {c} then holds {b} times as many ."),
              "/": ("Only one in every {b} is kept .", "Just one in every {b} stays .")},
         ask=("How many {x} are in the {c} ?", "How many {x} are in the {c} now ?")),
]
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def _apply(op, v, b):
    """v op b, or None when the result is not a whole number in 0..ARITH_MAX_VALUE."""
    r = {"+": v + b, "-": v - b, "*": v * b, "/": v // b if b and v % b == 0 else -1}[op]
    return r if 0 <= r <= ARITH_MAX_VALUE else None


@functools.lru_cache(maxsize=None)  # a few thousand (op, v), drawn from millions of times
def _arith_operands(op, v):
    """The operands b that give a result >= 1 (from 2: x1, /1 teach nothing; '1 are' is bad)."""
    bs = range(2, (ARITH_MAX_FACTOR if op in "*/" else ARITH_MAX_OPERAND) + 1)
    return [b for b in bs if (r := _apply(op, v, b)) is not None and r >= 1]


def arith_chain(steps):
    """The chain of a problem, names and templates aside: '12-4+7'."""
    return str(steps[0][0]) + "".join(f"{op}{b}" for _, op, b, _ in steps)


def arith_split(steps):
    """'train', 'validation' or 'test' by a hash of the chain. Validation takes half of what was
    once test's share, so train (and the warm-up assets trained on it) did not change."""
    h = int(hashlib.sha256(arith_chain(steps).encode()).hexdigest(), 16)
    return ARITH_HOLDOUT.get(h % 20, "train")


def arith_problem(rng):
    """One random problem: (question, steps [(a, op, b, result)...])."""
    n_ops = rng.choices(list(ARITH_OPS_MIX), weights=list(ARITH_OPS_MIX.values()))[0]
    v, steps = rng.randint(2, ARITH_MAX_OPERAND), []
    for _ in range(n_ops):
        options = {op: bs for op in "+-*/" if (bs := _arith_operands(op, v))}
        op = rng.choice(list(options))
        b = rng.choice(options[op])
        steps.append((v, op, b, _apply(op, v, b)))
        v = steps[-1][3]
    scene, name = rng.choice(SCENES), rng.choice(list(NAMES))
    words = dict(n=name, p=NAMES[name], x=rng.choice(ITEMS), c=rng.choice(BOXES), a=steps[0][0])
    text = [rng.choice(scene["start"]).format(**words)]
    text += [rng.choice(scene["ops"][op]).format(b=b, **words) for _, op, b, _ in steps]
    text.append(rng.choice(scene["ask"]).format(**words))
    return " ".join(text), steps


def _rationale(steps):
    return "\n".join(f"{a} {op} {b} = {r}" for a, op, b, r in steps)  # '12 - 4 = 8\n8 + 7 = 15'


@functools.lru_cache(maxsize=8)
def generate_arith(split, n, seed=ARITH_SEED):
    """n problems of one split, the same for the same seed. Validation and test are shuffled:
    one-operation chains are few and all drawn early, so every prefix (--eval-limit) samples all."""
    rng, problems, seen = random.Random(f"arith-{split}-{seed}"), [], set()
    while len(problems) < n:
        question, steps = arith_problem(rng)
        if arith_split(steps) != split or (split != "train" and arith_chain(steps) in seen):
            continue
        seen.add(arith_chain(steps))
        problems.append((question, steps))
    if split != "train":
        random.Random(f"arith-{split}-{seed}-order").shuffle(problems)
    return tuple(Example(q, _rationale(steps), str(steps[-1][3]), id=f"{split}-{i}")
                 for i, (q, steps) in enumerate(problems))


class Arith(NumberTask):
    name, splits = "arith", ("train", "validation", "test")
    turn_tokens = 24  # the longest gold turn is 21 tokens, and the context only 256

    def _download(self, split):
        return None  # generated here: nothing to fetch, and data_dir is not used

    def _load(self, split, data_dir):
        return list(generate_arith(split, ARITH_SIZES[split]))

    def wrong_target(self, ex, rng):
        """One step slips (off by a little, or the wrong operation); later steps carry the error."""
        steps = [(int(a), op, int(b), int(r)) for a, op, b, r in STEP.findall(ex.rationale)]
        for _ in range(20):
            i = rng.randrange(len(steps))
            a, op, b, r = steps[i]
            if rng.random() < 0.5:
                op = rng.choice([o for o in "+-*/" if o != op])
                slip = _apply(op, a, b)
            else:
                slip = r + rng.choice([-2, -1, 1, 2])
            if slip is None or slip == r or not 0 <= slip <= ARITH_MAX_VALUE:
                continue
            new, v = steps[:i] + [(a, op, b, slip)], slip
            for _, op2, b2, _ in steps[i + 1:]:
                nxt = _apply(op2, v, b2)
                if nxt is None:
                    break
                new.append((v, op2, b2, nxt))
                v = nxt
            else:
                if str(v) != ex.answer:
                    return f"{_rationale(new)}\n#### {v}"
        a, op, b, r = steps[-1]  # always possible: the last step off by one
        return f"{_rationale(steps[:-1] + [(a, op, b, r + 1)])}\n#### {r + 1}"


_TASKS = {"arith": Arith, "gsm8k": GSM8K, "csqa": CommonsenseQA, "mmlu": MMLU}
VALIDATION_SHARE = 20   # gsm8k, csqa, mmlu: one training question in 20 is held out for validation


def get_task(name, **options):
    if isinstance(name, Task):
        return name
    if name not in _TASKS:
        raise DataError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return _TASKS[name](**options)


def load_splits(task, data_dir=None):
    """{'train', 'validation', 'test'}: what a run trains on, chooses its settings on, and reports.
    Besides arith, validation is 1 in VALIDATION_SHARE of train by a hash of the question (it stays
    put when a file's order changes); test is the last split (csqa: dev, its test labels hidden)."""
    task = get_task(task)
    test = task.load(task.splits[-1], data_dir)
    if task.name == "arith":
        return {"train": task.load("train"), "validation": task.load("validation"), "test": test}
    train = task.load("train", data_dir)

    def held(ex):
        return int(hashlib.sha256(ex.question.encode()).hexdigest(), 16) % VALIDATION_SHARE == 0
    return {"train": [ex for ex in train if not held(ex)],
            "validation": [ex for ex in train if held(ex)], "test": test}


# -----------------------------------------------------------------------------
# Tokenizers: tiktoken encodings with the few facts the rest of the code needs.

class Tokenizer:
    """encode/decode ordinary text (callers insert special tokens as ids), plus eot, bos,
    stop_ids (every end of a turn), chat ("llama3", "chatml", or None: plain text; what
    discuss.render writes) and name: the spec get_tokenizer() takes."""

    def __init__(self, enc, name, eot, bos=None, chat=None, stop_ids=()):
        self.enc, self.name, self.eot, self.bos, self.chat = enc, name, eot, bos, chat
        self.n_vocab, self.stop_ids = enc.n_vocab, set(stop_ids) | {eot}

    def encode(self, text):
        return self.enc.encode_ordinary(text)  # "<|endoftext|>" in text is text, not the special id

    def decode(self, ids):
        return self.enc.decode(ids)

    def special(self, name):
        if name not in self.enc.special_tokens_set:
            raise KeyError(f"tokenizer {self.name} has no special token {name}")
        return self.enc.encode_single_token(name)


class ArithTokenizer(Tokenizer):
    """Whole words and numbers as single tokens. A newline before text is the token <|nl|>, and
    the text after it gets a leading space: so the number that starts a line ('8' in
    '= 8\\n8 + 7') is the same token ' 8' as everywhere else."""
    NL = re.compile(r"\n(?=\S)")

    def __init__(self, enc):
        super().__init__(enc, "arith", eot=enc.encode_single_token("<|endoftext|>"))
        self.nl = enc.encode_single_token("<|nl|>")

    def encode(self, text):
        first, *rest = self.NL.split(text)
        ids = self.enc.encode_ordinary(first)
        for part in rest:
            ids += [self.nl] + self.enc.encode_ordinary(" " + part)
        return ids

    def decode(self, ids):
        out, glue = bytearray(), False
        for i in ids:
            b = b"\n" if i == self.nl else self.enc.decode_single_token_bytes(i)
            out += b[1:] if glue and b.startswith(b" ") else b
            glue = i == self.nl
        return out.decode("utf-8", errors="replace")


@functools.cache
def arith_tokenizer():
    """The 256 bytes (a fallback), every number 0..999 after a space, and every word and sign of
    the templates and turn markers with and without one."""
    texts = [t for s in SCENES for grp in (s["start"], s["ask"], *s["ops"].values()) for t in grp]
    texts += [*NAMES, *NAMES.values(), *ITEMS, *BOXES, "Question Answer Partner I agree disagree",
              "The answer is", "Other agents answered Agent Use their reasoning as advice and",
              "answer again"]  # the last two: eval.py's debate
    words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]+", t)})
    pieces = [f" {i}" for i in range(ARITH_MAX_VALUE + 1)]
    pieces += [p for w in words + list(".?:=+-*/,()") + ["####"] for p in (w, " " + w)]
    ranks = {bytes([i]): i for i in range(256)}
    for p in pieces:
        ranks.setdefault(p.encode(), len(ranks))
    specials = {"<|endoftext|>": len(ranks), "<|nl|>": len(ranks) + 1}
    return ArithTokenizer(tiktoken.Encoding(
        "arith", pat_str=r" ?[A-Za-z]+| ?\d+| ?[^\sA-Za-z\d]+|\s+(?!\S)|\s+",
        mergeable_ranks=ranks, special_tokens=specials))


@functools.cache
def byte_tokenizer():
    enc = tiktoken.Encoding("byte", pat_str=r"\S+|\s+", special_tokens={"<|endoftext|>": 256},
                            mergeable_ranks={bytes([i]): i for i in range(256)})
    return Tokenizer(enc, "byte", eot=256)


@functools.cache
def gpt2_tokenizer():
    try:
        enc = tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken fetches its BPE files once; offline that fails in many ways
        raise DataError(f"could not load the GPT-2 BPE files ({type(e).__name__}); set "
                        f"TIKTOKEN_CACHE_DIR to a folder that holds them") from None
    return Tokenizer(enc, "gpt2", eot=enc.eot_token)


# Meta's Llama 3 tokenizer: the pre-tokenizer regex and the 256 special tokens after the BPE ranks.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                   "<|python_tag|>", *(f"<|reserved_special_token_{i}|>" for i in range(2, 247))]


def llama3_tokenizer(model_file, name, chat):
    """tokenizer.model: one 'base64-token rank' per line. Read here, not by tiktoken's
    load_tiktoken_bpe, which caches local files by path (a changed file would read stale)."""
    ranks = {}
    with open(model_file, "rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError:
                raise DataError(f"{model_file}:{lineno}: expected 'base64-token rank'") from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise DataError(f"{model_file}: ranks are not 0..{len(ranks) - 1} without gaps")
    specials = {s: len(ranks) + i for i, s in enumerate(LLAMA3_SPECIALS)}
    enc = tiktoken.Encoding(f"llama3:{name}", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                            special_tokens=specials)
    stops = [specials[s] for s in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")]
    return Tokenizer(enc, name, eot=stops[0] if chat else stops[1], stop_ids=stops,
                     bos=specials["<|begin_of_text|>"], chat="llama3" if chat else None)


class BPETokenizer(Tokenizer):
    """A tokenizer.json's byte-level BPE. Bytes missing from its vocabulary (a few control
    characters) have ids past n_vocab in enc, and encode() drops them: Hugging Face does too."""

    def __init__(self, enc, name, n_vocab, nfc, **kw):
        super().__init__(enc, name, **kw)
        self.n_vocab, self.nfc = n_vocab, nfc

    def encode(self, text):
        text = unicodedata.normalize("NFC", text) if self.nfc else text  # Qwen2's normalizer
        return [i for i in super().encode(text) if i < self.n_vocab]


# Hugging Face's byte-level BPE writes each byte as a printable character (GPT-2's table):
# printable Latin-1 as itself, the rest (space, controls, ...) as chr(256), chr(257), ...
_PRINTABLE = [b for b in range(256) if chr(b).isprintable() and b != 32]
BYTE_OF = ({chr(b): b for b in _PRINTABLE}
           | {chr(256 + i): b for i, b in enumerate(sorted(set(range(256)) - set(_PRINTABLE)))})
GPT2_PATTERN = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# SmolLM2 splits every digit off before GPT-2's regex: a digit is a piece of its own, and the
# whitespace before one ends its piece whole (GPT-2 would leave its last space to what follows).
DIGITS_PATTERN = r"\p{N}|'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"
CHAT_MARKS = {"llama3": "<|start_header_id|>", "chatml": "<|im_start|>"}  # in a chat template


def _split_pattern(pre, where):
    """The regex that splits text as a tokenizer.json pre_tokenizer does: ByteLevel (GPT-2's
    regex), Digits then ByteLevel (SmolLM2), or a Split regex then a plain ByteLevel (Qwen2)."""
    *first, last = (pre or {}).get("pretokenizers", [pre or {}])
    if last.get("type") == "ByteLevel" and not last.get("add_prefix_space"):
        own = last.get("use_regex", True)
        if own and not first:
            return GPT2_PATTERN
        if own and first == [{"type": "Digits", "individual_digits": True}]:
            return DIGITS_PATTERN
        if not own and len(first) == 1 and first[0].get("type") == "Split" and \
                first[0].get("behavior") == "Isolated" and not first[0].get("invert"):
            if regex := first[0].get("pattern", {}).get("Regex"):
                return regex
    raise DataError(f"{where}: unsupported pre_tokenizer {json.dumps(pre)[:200]}")


def bpe_tokenizer(path, name):
    """A Hugging Face folder's tokenizer.json (byte-level BPE: SmolLM2, Qwen2). The end of a turn
    is tokenizer_config.json's eos_token, generation_config.json's eos_token_id adds stop ids."""
    where = path / "tokenizer.json"
    spec, config = _read_json(where), _read_json(path / "tokenizer_config.json")
    model, normalizer = spec.get("model") or {}, (spec.get("normalizer") or {}).get("type")
    if model.get("type") != "BPE" or normalizer not in (None, "NFC"):
        raise DataError(f"{where}: not a byte-level BPE (model {model.get('type')}, "
                        f"normalizer {normalizer})")
    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    try:
        vocab = {bytes(BYTE_OF[c] for c in t): i for t, i in model["vocab"].items()
                 if t not in specials}
        merged = [model["vocab"][a + b] for a, b in
                  (m.split(" ") if isinstance(m, str) else m for m in model["merges"])]
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{where}: not a byte-level BPE vocabulary ({type(e).__name__} "
                        f"{str(e)[:40]})") from None
    # tiktoken merges by the rank of the merged token: right only when merges come in id order.
    if any(a >= b for a, b in zip(merged, merged[1:])):
        raise DataError(f"{where}: merges are not in vocabulary order; tiktoken cannot follow")
    n_vocab = max([*vocab.values(), *specials.values()]) + 1
    missing = sorted({bytes([b]) for b in range(256)} - vocab.keys())
    ranks = vocab | {b: n_vocab + i for i, b in enumerate(missing)}  # tiktoken needs every byte
    enc = tiktoken.Encoding(f"bpe:{name}", pat_str=_split_pattern(spec.get("pre_tokenizer"), where),
                            mergeable_ranks=ranks, special_tokens=specials)
    eos = config.get("eos_token")
    eos = specials.get(eos.get("content") if isinstance(eos, dict) else eos)
    stops = _read_json(path / "generation_config.json", missing={}).get("eos_token_id") or []
    stops = stops if isinstance(stops, list) else [stops]
    if eos is None and not stops:
        raise DataError(f"{path}: no end token (eos_token in tokenizer_config.json or "
                        f"eos_token_id in generation_config.json)")
    first = ((spec.get("post_processor") or {}).get("single") or [{}])[0]  # a bos: Llama 3's
    template = config.get("chat_template") or ""
    if (path / "chat_template.jinja").is_file():  # where newer transformers save it
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    return BPETokenizer(enc, name, n_vocab, normalizer == "NFC",
                        eot=stops[0] if eos is None else eos, stop_ids=stops,
                        bos=specials.get(first.get("SpecialToken", {}).get("id")),
                        chat=next((c for c, m in CHAT_MARKS.items() if m in str(template)), None))


def hub_tokenizer(repo):
    """Fetch a hub repo's tokenizer files into the cache and return its folder: Meta's
    original/tokenizer.model for Llama 3, else tokenizer.json and its configs (SmolLM2, Qwen2)."""
    config = hub_file(repo, "config.json")
    if _read_json(config).get("model_type") != "gpt2":
        try:
            hub_file(repo, "original/tokenizer.model")
        except DataError:
            for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
                hub_file(repo, f)
    return config.parent


def get_tokenizer(name_or_dir, chat=None):
    """'gpt2' (and its sizes), 'byte', 'arith', a model directory (Meta's tokenizer.model, a GPT-2
    config.json or a tokenizer.json) or a hub repo. tokenizer.model chats when `chat` or, by
    default, its name says 'instruct' (Llama-3.2-1B-Instruct); tokenizer.json's template says."""
    spec = str(name_or_dir)
    if spec in ("arith", "byte"):
        return arith_tokenizer() if spec == "arith" else byte_tokenizer()
    if re.fullmatch(r"(openai-community/)?(gpt2|distilgpt2|gpt2-(medium|large|xl))", spec):
        return gpt2_tokenizer()
    path = Path(spec).expanduser()
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec) and not path.exists():
        path = hub_tokenizer(spec)  # read as a directory, named by the repo
    if not path.is_dir():
        raise DataError(f"unknown tokenizer {spec!r}: expected gpt2, byte, arith, a model "
                        f"directory or a hub repo")
    for f in (path / "tokenizer.model", path / "original" / "tokenizer.model"):
        if f.is_file():
            named = "/".join(path.resolve().parts[-2:]).lower()  # '...-Instruct[/original]'
            return llama3_tokenizer(f, spec, "instruct" in named if chat is None else chat)
    if _read_json(path / "config.json", missing={}).get("model_type") == "gpt2":
        return gpt2_tokenizer()
    if (path / "tokenizer.json").is_file():
        return bpe_tokenizer(path, spec)
    raise DataError(f"{path}: no tokenizer.model, original/tokenizer.model, GPT-2 config.json "
                    f"or tokenizer.json")


# -----------------------------------------------------------------------------
# Batches: sequences of (text or token ids, trainable) segments -> padded idx and masked targets.

def encode_part(tok, part):
    """A segment's token ids: text is encoded, a list of ids (special tokens) is taken as it is."""
    return tok.encode(part) if isinstance(part, str) else [int(i) for i in part]


def make_batch(tok, sequences, block_size):
    """idx (B, T) and targets (B, T), T = the longest sequence: targets keep a token only where it
    belongs to a trainable segment, else -100. Too long: cut the left of the untrained prefix."""
    rows = []
    for seq in sequences:
        ids, train = [], []
        for part, trainable in seq:
            t = encode_part(tok, part)
            ids += t
            train += [bool(trainable)] * len(t)
        excess = len(ids) - (block_size + 1)
        if excess > 0:
            first = max(train.index(True) if True in train else len(ids), 1)  # first supervised
            if excess > first - 1:  # keep one token of context before the first target
                raise ValueError(f"a training sequence's trainable part ({len(ids) - first + 1} "
                                 f"tokens with its context) does not fit in block_size "
                                 f"{block_size}; refusing to cut the target")
            ids, train = ids[excess:], train[excess:]
        if len(ids) < 2:
            raise ValueError("a training sequence needs at least 2 tokens")
        rows.append((ids, train))
    T = max(len(ids) for ids, _ in rows) - 1
    idx = torch.full((len(rows), T), tok.eot, dtype=torch.long)
    targets = torch.full((len(rows), T), -100, dtype=torch.long)
    for r, (ids, train) in enumerate(rows):
        idx[r, :len(ids) - 1] = torch.tensor(ids[:-1])
        targets[r, :len(ids) - 1] = torch.tensor([t if m else -100
                                                  for t, m in zip(ids[1:], train[1:])])
    return idx, targets


def length_groups(targets):
    """[(row indices, length), ...]: one or two groups, each cut after its rows' last target. SAIE
    mixes discussions with plain pairs several times shorter: split where that saves a quarter."""
    ends = [int(r.nonzero().max()) + 1 if r.any() else 1 for r in targets != -100]
    order = sorted(range(len(ends)), key=ends.__getitem__)
    n, longest = len(order), ends[order[-1]]
    cost, k = min((k * ends[order[k - 1]] + (n - k) * longest, k) for k in range(1, n + 1))
    if cost > 0.75 * n * longest:
        k = n
    return [(order[:k], ends[order[k - 1]])] + ([(order[k:], longest)] if k < n else [])


def iterate_batches(n, batch_size, seed, rank=0, world_size=1):
    """Endless index lists: a fresh permutation per epoch from (seed, epoch), cut into global
    batches of batch_size * world_size (an incomplete tail is dropped); each rank gets its slice."""
    step = batch_size * world_size
    if not 0 <= rank < world_size or batch_size < 1:
        raise ValueError(f"bad batch layout: batch_size {batch_size}, rank {rank} of {world_size}")
    if n < step:
        raise ValueError(f"{n} examples cannot fill one batch of {batch_size} x {world_size} ranks")

    def batches():
        for epoch in itertools.count():
            perm = random.Random(f"{seed}-{epoch}").sample(range(n), n)
            for start in range(0, n - step + 1, step):
                yield perm[start + rank * batch_size: start + (rank + 1) * batch_size]
    return batches()
