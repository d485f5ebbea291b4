#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a circle.

Each file under src/ is one module (`a/mod.rs` is `a`). An edge A -> B is any path in
A's code (outside its `#[cfg(test)]` module, comments and strings) that names B:
`crate::b::...`, `super::...`, `self::...`, in `use` trees or inline. A path names
the deepest module file it reaches (`crate::routes::paths::X` is routes/paths.rs,
`crate::routes::ROUTES` is routes/mod.rs). Prints every circle (strongly connected
component of more than one module) and exits 1 if there is one.

    python3 .ci/module-cycles.py [--skip PREFIX]...

`--skip PREFIX` leaves out the modules under a prefix (edges through them included),
for a lane that is being reworked elsewhere; CI runs it without (no circle anywhere).
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip(code: str) -> str:
    # Drop the unit-test module (by convention the last item of a file).
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", code)
    if cut:
        code = code[: cut.start()]
    # Comments, then string and char literals.
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r'r#*"(?:.|\n)*?"#*', '""', code)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    return code


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix: str, t: str):
        if "{" not in t:
            out.append(prefix + t)
            return
        i = t.index("{")
        head, body = t[:i], t[i + 1 : -1]
        depth, start = 0, 0
        for j, ch in enumerate(body + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                part = body[start:j]
                if part:
                    walk(prefix + head, part)
                start = j + 1

    walk("", tree)
    return [re.sub(r"\bas\w+$", "", p) for p in out]


def paths_in(code: str, facade: bool) -> list:
    """Every module path `code` names. In a facade (a `mod.rs`), `pub use child::X`
    re-exports are ownership, not imports, and are left out (`facade=True`)."""
    paths = []
    for m in re.finditer(r"\b(pub(?:\([\w:]+\))?\s+)?use\s+([^;]+);", code):
        if m.group(1) and facade and not m.group(2).lstrip().startswith(("crate", "super")):
            continue
        paths.extend(expand_use(m.group(2)))
    code_wo_use = re.sub(r"\buse\s+[^;]+;", "", code)
    paths.extend(re.findall(r"\b(?:crate|super|self)(?:::\w+)+", code_wo_use))
    return paths


def resolve(path: str, here: tuple, is_dir_module: bool, modules: set):
    segs = path.split("::")
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("self", "super"):
        base = here
        rest = segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    else:
        return None  # an external crate or a local name
    target = base
    for s in rest:
        if target + (s,) in modules:
            target = target + (s,)
        else:
            break
    return target


def main():
    skip = []
    args = sys.argv[1:]
    while args:
        if args[0] == "--skip" and len(args) > 1:
            skip.append(tuple(args[1].split("/")))
            args = args[2:]
        else:
            sys.exit(__doc__)
    files = {module_of(p): p for p in SRC.rglob("*.rs")}
    modules = set(files)
    graph = {m: set() for m in modules}
    for m, p in files.items():
        is_dir = p.name in ("mod.rs", "lib.rs", "main.rs")
        code = strip(p.read_text())
        for path in paths_in(code, is_dir):
            t = resolve(path, m, is_dir, modules)
            # A module's path through its parent or the crate root is not an import of it.
            if t is not None and t != m and t != () and t[: len(m)] != m:
                graph[m].add(t)
        # A parent naming its own child in code (`comments::list`), not in a re-export.
        for name in re.findall(r"(?<!::)\b(\w+)::", re.sub(r"\buse\s+[^;]+;", "", code)):
            child = m + (name,)
            if child in modules and child != m:
                graph[m].add(child)

    # Tarjan's strongly connected components.
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    name = lambda m: "::".join(m) or "crate"
    bad = []
    for comp in sccs:
        shown = [m for m in comp if not any(m[: len(s)] == s for s in skip)]
        if len(comp) > 1 and shown:
            bad.append(comp)
    for comp in bad:
        members = set(comp)
        print(f"import circle of {len(comp)} modules:")
        for m in sorted(comp):
            deps = sorted(name(t) for t in graph[m] if t in members)
            print(f"  {name(m)} -> {', '.join(deps)}")
    if bad:
        sys.exit(1)
    print(f"no import circle among {len(modules)} modules"
          + (f" (skipping circles only within {', '.join(map(name, skip))})" if skip else ""))


if __name__ == "__main__":
    main()
