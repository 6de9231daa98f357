"""`legion doctor` checks for the KUKA embodiment (contributed through ``legion.doctor``)."""
from __future__ import annotations

from importlib.resources import files

from legion_core.cli.doctor import Check


def checks() -> list[Check]:
    description = files('legion_kuka') / 'urdf' / 'iiwa7.urdf'
    if description.is_file():
        return [Check('iiwa7 description', True, str(description))]
    return [Check('iiwa7 description', False, f'{description} not found',
                  'reinstall legion_kuka from the workspace: pip install -e src/legion_kuka')]
