"""MkDocs hook: puts into the site the files it shows that live outside docs/.

* KaTeX (``node_modules/katex/dist``, from ``npm ci`` at the repository root): its script,
  stylesheet and fonts under ``assets/katex/``, so math renders with no network;
* the benchmarks' figures (``benchmarks/results/**/*.png``) under ``bench/``, where the
  benchmark pages link them, so they are not copied into docs/.

A missing KaTeX fails the build with the command that installs it.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
KATEX = ROOT / "node_modules" / "katex" / "dist"
BENCH = ROOT / "benchmarks" / "results"


def on_files(files, config):
    if not (KATEX / "katex.min.js").is_file():
        raise PluginError(f"KaTeX is not installed ({KATEX} is missing): run `npm ci` in {ROOT}")
    katex = [KATEX / "katex.min.js", KATEX / "katex.min.css", *sorted((KATEX / "fonts").iterdir())]
    for path in katex:
        uri = "assets/katex/" + path.relative_to(KATEX).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    for path in sorted(BENCH.rglob("*.png")):
        uri = "bench/" + path.relative_to(BENCH).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
