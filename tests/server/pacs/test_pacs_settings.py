"""The PACS and its key come only from `medviz serve --pacs URL` (and its credential files) and --pacs-key-file:
`--set pacs_key=...`, `--set pacs=...` and a config file naming either are refused in one line naming those
options, never accepted and then silently replaced."""

from __future__ import annotations

from pathlib import Path

import pytest

from medviz_core.errors import MedvizError
from server.cli.commands import serve_settings
from server.cli.main import build_parser
from server.settings import SettingError, Settings, configured

HINT = ("is set by medviz serve --pacs URL (credentials: --pacs-user with --pacs-password-file, or --pacs-token-file) "
        "and --pacs-key-file, never")


@pytest.mark.parametrize("name", ["pacs", "pacs_key"])
def test_the_pacs_and_its_key_are_refused_in_set_and_in_a_config_file(name: str) -> None:
    with pytest.raises(SettingError) as in_set:
        configured(Settings(), None, [f"{name}=pacs-key-given-in-set-0001"])
    with pytest.raises(SettingError) as in_file:
        configured(Settings(), {name: "pacs-key-given-in-a-file-01"})
    assert (in_set.value.message, in_file.value.message) == (f"{name} {HINT} in --set",
                                                             f"{name} {HINT} in the config file")


def test_serve_refuses_a_pacs_key_in_set_or_in_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "medviz.toml"
    config.write_text('pacs_key = "pacs-key-given-in-a-file-01"\n')
    for extra in (["--set", "pacs_key=pacs-key-given-in-set-0001"], ["--config", str(config)]):
        args = build_parser().parse_args(["serve", "--pacs", "http://127.0.0.1:9/dicom-web", *extra])
        with pytest.raises(MedvizError) as refused:
            serve_settings(args)
        assert refused.value.message.startswith(f"pacs_key {HINT} in ")
        assert "pacs-key-given" not in refused.value.message
