"""The docs run as printed: every python block of README.md and docs/*.md executes in order and prints
what its page shows (docs/run_snippets.py; `python docs/run_snippets.py --update` re-runs the blocks
and rewrites the outputs after a change to the code)."""
import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED

spec = importlib.util.spec_from_file_location("run_snippets", ROOT / "docs" / "run_snippets.py")
snippets = sys.modules["run_snippets"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snippets)

PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_printed(page, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # one thread: the pages' sums
    gsm8k = SHARED / "data" / "gsm8k" / "test.jsonl"
    if gsm8k.is_file():  # the walkthrough's GSM8K block reads the cache; offline, fill it from ../shared
        (tmp_path / "data" / "gsm8k").mkdir(parents=True)
        (tmp_path / "data" / "gsm8k" / "test.jsonl").symlink_to(gsm8k)
        env["SAIE_CACHE"] = str(tmp_path)
    r = subprocess.run([sys.executable, "docs/run_snippets.py", page], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\nafter a deliberate change: python docs/run_snippets.py {page} --update"


PAGE = """# A page

```python
import math
print(math.sqrt(16))
```
```
4.0
```

```python
# continues from the block above: math
>>> math.floor(2.5)
2
>>> [1,
...  2]
[1, 2]
```
"""


def test_a_stale_output_fails_until_the_page_is_updated(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("4.0", "5.0").replace("\n2\n", "\n3\n"))
    problems, _, new = snippets.check_page(page)
    assert len(problems) == 2 and new is None, problems
    assert "page.md:8" in problems[0] and "5.0" in problems[0] and "4.0" in problems[0]
    assert "page.md:13" in problems[1] and "math.floor" in problems[1]
    problems, _, new = snippets.check_page(page, update=True)
    assert problems == [] and new == PAGE, "--update writes what the code prints now"
    page.write_text(new)
    assert snippets.check_page(page) == ([], [], None)


def test_a_shown_output_wrapped_differently_still_matches(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("[1, 2]\n```", "[1,\n 2]\n```"))
    assert snippets.check_page(page)[0] == []


def test_a_block_must_say_what_it_continues_from(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE.replace("# continues from the block above: math\n", ""))
    (problem,) = snippets.check_page(page)[0]
    assert "page.md:11: uses math without defining them" in problem
    page.write_text(PAGE.replace("above: math", "above: math, tok"))
    (problem,) = snippets.check_page(page)[0]
    assert "continues with tok, which no earlier block defines" in problem


def test_markers_skip_need_and_vary(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- docs: skip: not code -->\n```python\ndef f(x) -> int\n```\n\n"
                    "<!-- docs: needs no/such/file -->\n```python\nraise SystemExit\n```\n\n"
                    "<!-- docs: vary \\d+ ms -->\n```python\nimport time\nprint(f'took {time.time_ns()} ms')\n```\n"
                    "```\ntook 12 ms\n```\n\n"
                    "```bash\nexit 1\n```\n\n"
                    "<!-- docs: run -->\n```bash\necho hi; echo there >&2\n```\n```\nhi\nthere\n```\n")
    problems, skipped, _ = snippets.check_page(page)
    assert problems == [] and skipped == [f"{page}:7: needs no/such/file"], (problems, skipped)


def test_links_name_code_that_exists_without_line_numbers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[`GPT.generate`](../model.py) [`data.make_batch`](data.py) [`model.py`](model.py)\n")
    assert snippets.check_page(page)[0] == []
    page.write_text("[`GPT.generate`](../model.py#L254) and [`GPT.no_such`](../model.py)\n")
    anchor, missing = snippets.check_page(page)[0]
    assert "points at a line" in anchor and "model.py has no GPT.no_such" in missing
