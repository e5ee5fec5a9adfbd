"""The five modules import only those below them: data <- model <- discuss <- eval <- saie."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("data", "model", "discuss", "eval", "saie")


def imported(path):
    """Every module name an import statement anywhere in the file names (lazy ones included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_only_go_down():
    for i, name in enumerate(ORDER):
        upward = imported(ROOT / f"{name}.py") & set(ORDER[i:])
        assert not upward, f"{name}.py imports {', '.join(sorted(upward))}, above or beside it"


def test_the_check_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def play():\n    from eval import x\n    import saie.sub\n")
    assert {"eval", "saie"} <= imported(f)
