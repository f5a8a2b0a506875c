"""Config files as a new user gets them wrong, through the real CLI: a file that is not YAML text (a checkpoint passed
by mistake) and a mapping that holds a key twice are one line naming the file (and the line), exit 2, nothing
written. Neither imports torch, so each takes a fraction of a second."""

from __future__ import annotations

import pytest
from conftest import dsf

CASES = {
    "a binary file": (b"PK\x03\x04\x14\x00\x00\x08\x08\x00\x93\xff\xfe\x00", "not a text file (byte 10 is not UTF-8)"),
    "UTF-8 with control characters": (b"trainer:\n  max_epochs: 1\x00\x01\n", "not a YAML text file"),
    "a key given twice": (
        b"trainer:\n  max_epochs: 1\n  accelerator: cpu\n  max_epochs: 2\n",
        "line 4: key 'max_epochs' appears twice in one mapping (first on line 2); keep one of them",
    ),
    "a section given twice": (b"run:\n  seed: 1\nmodel: {}\nrun:\n  seed: 2\n", "line 4: key 'run' appears twice"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_config_file_that_is_not_one_mapping_of_text_is_one_line(tmp_path, case):
    content, words = CASES[case]
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    for verb in ("run", "config"):
        done = dsf(verb, "-c", str(config), "--output", str(tmp_path / "runs"), cwd=tmp_path, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith(f"dsf: error: {config}") and words in lines[0], lines
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.yaml"]  # nothing written


def test_yaml_merge_keys_may_still_override_what_they_bring(tmp_path):
    """`<<: *defaults` then a key of its own is YAML's way to override, not a key given twice."""
    config = tmp_path / "config.yaml"
    config.write_text("trainer:\n  <<: {max_epochs: 1, accelerator: cpu}\n  max_epochs: 3\n")
    done = dsf("config", "-c", str(config), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "max_epochs: 3" in done.stdout
