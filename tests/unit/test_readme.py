"""The README's topic table and port table stay in step with the catalogue and the runtime."""

from __future__ import annotations

from eventkit.settings import REPO_ROOT
from eventshop_tools import stack

README = (REPO_ROOT / "README.md").read_text()


def test_every_catalogue_topic_is_in_the_readme(catalogue) -> None:
    missing = [spec.name for spec in catalogue.topics if f"`{spec.name}`" not in README]
    assert not missing, f"README's topic table lacks {missing}"


def test_every_service_port_is_in_the_readme() -> None:
    missing = [name for name, (_, port) in stack.SERVICES.items() if f"127.0.0.1:{port}" not in README]
    assert not missing, f"README lacks the address of {missing}"
