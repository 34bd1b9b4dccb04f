"""The manual builds: `mkdocs build --strict` fails on a broken link or anchor between pages
(mkdocs.yml's `validation`), so a renamed heading or a moved page fails the suite."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strictly(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "training" / "index.html").is_file()
    assert (tmp_path / "site" / "results" / "index.html").is_file()


def test_a_broken_anchor_fails_the_build(tmp_path):
    """The strict build is not vacuous: a link to a heading that does not exist aborts it."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[there](other.md#no-such-heading)\n")
    (docs / "other.md").write_text("# Other\n\n## A heading\n")
    config = (ROOT / "mkdocs.yml").read_text().split("\nnav:")[0]  # the same validation, no nav
    (tmp_path / "mkdocs.yml").write_text(config)
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(tmp_path / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no-such-heading" in done.stderr
