"""`dsan models`: methods and presets from the registry."""

from __future__ import annotations

import json

from dsan_toolkit.config import config_hash
from dsan_toolkit.models.registry import get_method


def test_models_lists_registry_and_presets(cli):
    code, out = cli("models")
    assert code == 0
    for name in ("dsanet", "vadclip", "mil", "zeroshot"):
        assert name in out
    code, out = cli("models", "dsanet")
    assert code == 0 and "visual_length" in out and "tiny" in out
    code, out = cli("models", "vadclip", "--preset", "xd")
    assert code == 0
    rec = json.loads(out)
    assert rec["preset"]["name"] == "xd" and rec["hash"] == config_hash(get_method("vadclip").get_preset("xd"))


def test_models_bad_names(cli):
    code, out = cli("models", "nope")
    assert code == 2 and "unknown method 'nope'" in out
    code, out = cli("models", "vadclip", "--preset", "nope")
    assert code == 2 and "no preset 'nope'" in out
