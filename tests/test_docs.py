"""The manual builds: `mkdocs build --strict` fails on a broken link or anchor between pages
(mkdocs.yml's `validation`), so a renamed heading or a moved page fails the suite. And the
manual's table of config keys is the config's: every key, with its default."""

import re
import subprocess
import sys
from pathlib import Path

from sesemi_common.config import RESUMABLE_KEYS, Config, flat_values

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


def _as_written(shown: str, value):
    """The table's text (backticks stripped) read as the type of the config's `value`."""
    if isinstance(value, bool):
        return {"true": True, "false": False}.get(shown, shown)
    if isinstance(value, (int, float)):
        return type(value)(shown)  # 5e-4 and 0.0005 are one default
    return "" if shown == '""' else shown


def test_the_config_table_lists_every_key_with_its_default():
    """docs/training.md's table: every key but the methods' own knobs (docs/methods.md lists
    those), each with the default `sesemi_common/config.py` gives it (a new key was missing
    from it five times, and a changed default once)."""
    text = (ROOT / "docs" / "training.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+\.[a-z_.]+)` \| ([^|]*) \|", text, re.M))
    defaults = {k: v for k, v in flat_values(Config()).items() if not k.startswith("method.") or k == "method.name"}
    assert sorted(rows) == sorted(defaults)
    for key, value in defaults.items():
        assert _as_written(rows[key].strip().strip("`"), value) == value, key


def test_the_manual_names_every_key_resume_may_change():
    text = (ROOT / "docs" / "training.md").read_text()
    sentence = text[text.index("`--resume` may change only"):].split("\n\n")[0]
    assert sorted(re.findall(r"`([a-z_]+\.[a-z_]+)`", sentence)) == sorted(RESUMABLE_KEYS)
